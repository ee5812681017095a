"""A job's progress as a person reads it: a live bar (tqdm, on stderr) and a summary."""

from __future__ import annotations

from tqdm import tqdm

from streamdag.bulk.state import JobState

__all__ = ["ProgressBar", "summary"]


class ProgressBar:
    """Rows answered of the total (rate and ETA by tqdm), with sent, in flight and failed;
    updated at every checkpoint."""

    def __init__(self, job: str) -> None:
        self._bar = tqdm(desc=job, unit="row", dynamic_ncols=True, smoothing=0.1)
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


def summary(state: JobState, seconds: float) -> str:
    """The last line of a job: rows, results, failures, wall time, rows/s."""
    rate = (state.results + state.failures) / seconds if seconds > 0 else 0.0
    status = "done" if state.done else "stopped"
    return (
        f"job {state.job} {status}: {state.read:,} rows, {state.results:,} results, "
        f"{state.failures:,} failures in {seconds:.1f} s ({rate:,.0f} rows/s)"
    )
