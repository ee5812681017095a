"""A job's progress as a person reads it: a live bar (tqdm) on a terminal, plain lines
elsewhere, and a summary."""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO

from tqdm import tqdm

from streamdag.bulk.state import JobState

__all__ = ["Progress", "ProgressBar", "ProgressLines", "open_progress", "summary"]


class Progress(Protocol):
    def update(self, state: JobState) -> None:
        """The job's state at a checkpoint (and once when it opens)."""

    def close(self) -> None:
        """The job ended, or stopped."""


class ProgressBar:
    """Rows answered of the total (rate and ETA by tqdm), with sent, in flight and failed;
    updated at every checkpoint."""

    def __init__(self, job: str, stream: TextIO | None = None) -> None:
        self._bar = tqdm(desc=job, unit="row", dynamic_ncols=True, smoothing=0.1, file=stream)
        self._started = False

    def update(self, state: JobState) -> None:
        if state.total is not None and self._bar.total != state.total:
            self._bar.total = state.total
        answered = state.results + state.failures
        if not self._started:  # a resumed job: what came before is not this run's rate
            self._bar.n = self._bar.last_print_n = answered
            self._bar.reset(total=state.total)
            self._bar.update(answered)
            self._started = True
        else:
            self._bar.update(answered - self._bar.n)
        self._bar.set_postfix(
            sent=state.sent, in_flight=len(state.pending), failed=state.failures, refresh=False
        )

    def close(self) -> None:
        self._bar.close()


class ProgressLines:
    """For a stream that is no terminal (a log file, a CI job), where a bar redrawn in
    place would pile up as one endless line: a line when the job opens, one every
    ``every_s`` seconds, and one at the end."""

    def __init__(self, job: str, stream: TextIO, every_s: float = 10.0) -> None:
        self.job = job
        self.stream = stream
        self.every_s = every_s
        self._first: tuple[float, int] | None = None  # when, rows answered: this run's start
        self._printed = 0.0
        self._last: JobState | None = None

    def update(self, state: JobState) -> None:
        now = time.monotonic()
        answered = state.results + state.failures
        if self._first is None:
            self._first = (now, answered)
        self._last = state
        if self._printed == 0.0 or now - self._printed >= self.every_s:
            self._print(state, now)

    def close(self) -> None:
        if self._last is not None:
            self._print(self._last, time.monotonic())

    def _print(self, state: JobState, now: float) -> None:
        assert self._first is not None
        self._printed = now
        answered = state.results + state.failures
        of = "" if state.total is None else f"/{state.total:,}"
        share = f" ({answered / state.total:.0%})" if state.total else ""
        seconds = now - self._first[0]
        rate = (answered - self._first[1]) / seconds if seconds > 0 else 0.0
        left = None if not state.total or rate <= 0 else (state.total - answered) / rate
        eta = "" if left is None else f", ETA {_duration(left)}"
        self.stream.write(
            f"job {self.job}: {answered:,}{of} rows answered{share}, {state.failures:,} "
            f"failed, {state.sent:,} sent, {len(state.pending):,} in flight, "
            f"{rate:,.0f} rows/s{eta}\n"
        )
        self.stream.flush()


def open_progress(job: str, *, quiet: bool, stream: TextIO | None = None) -> Progress | None:
    """None with ``quiet``; a bar on a terminal; plain lines on anything else."""
    if quiet:
        return None
    stream = stream or sys.stderr
    return ProgressBar(job, stream) if stream.isatty() else ProgressLines(job, stream)


def summary(state: JobState, seconds: float, answered: int | None = None) -> str:
    """The last line of a job: rows, results, failures, wall time, rows/s (``answered``:
    the rows answered in this run; all of the job's, by default)."""
    handled = state.results + state.failures if answered is None else answered
    rate = handled / seconds if seconds > 0 else 0.0
    status = "done" if state.done else "stopped"
    return (
        f"job {state.job} {status}: {state.read:,} rows, {state.results:,} results, "
        f"{state.failures:,} failures in {seconds:.1f} s ({rate:,.0f} rows/s)"
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
