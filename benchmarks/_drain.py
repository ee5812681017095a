"""Timing a drain: from a drainer's start until its output topic holds all n results.

The drainer is a function run in a forked child (or a thread) of this process
(``timed_drain``), or a command run as a process of its own (``timed_command``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streamdag.errors import StreamdagError
from streamdag.kafka import consumer_config
from streamdag.kafka.headers import ERROR

__all__ = ["BenchmarkFailed", "Drain", "OutputCounter", "timed_command", "timed_drain"]


class BenchmarkFailed(Exception):
    """The benchmark could not measure: a drainer failed, timed out or wrote a wrong result."""


def run_main(main: Callable[[list[str]], int]) -> NoReturn:
    """A benchmark's entry point: exit with ``main``'s status; a benchmark that could not
    measure, or a streamdag error, is one line on stderr and status 1."""
    try:
        sys.exit(main(sys.argv[1:]))
    except (BenchmarkFailed, StreamdagError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


@dataclass(frozen=True)
class Drain:
    """One drain of the backlog; times in seconds from the drainer's start."""

    records: int
    seconds: float  # until the last result was readable
    first_result_s: float  # until the first results were readable (group join, init)
    steady_rate: float  # results per second after the first ones were readable
    cpu_s: float | None = None  # CPU time of the drainer's process, all its threads

    @property
    def cpu_us_per_record(self) -> float:
        return float("nan") if self.cpu_s is None else self.cpu_s / self.records * 1e6

    @property
    def rate(self) -> float:
        return self.records / self.seconds


class OutputCounter:
    """Reads a topic from its beginning (read_committed) and notes when it holds n results.

    Created before the drainer starts so its own start-up is not timed. Counts distinct
    keys (request ids), so a duplicate could never make a drain look finished early.
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.topic = topic
        self.consumer = Consumer(
            consumer_config(
                bootstrap, f"bench-counter-{uuid.uuid4().hex[:8]}", client_id="bench-counter"
            )
        )
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self.sample: bytes | None = None

    def wait(self, n: int, *, started: float, timeout: float, alive: Callable[[], bool]) -> Drain:
        seen: set[bytes] = set()
        first_s = first_count = 0.0
        deadline = started + timeout
        while len(seen) < n:
            now = time.perf_counter()
            if now > deadline:
                raise BenchmarkFailed(f"{self.topic}: {len(seen)} of {n} results after {timeout}s")
            if not alive():
                raise BenchmarkFailed(f"{self.topic}: the drainer stopped at {len(seen)} of {n}")
            # Small reads, so the first results are timed closely (the steady rate needs it).
            messages = self.consumer.consume(500, 0.05)
            got = 0
            for m in messages:
                if m.error() is not None:
                    continue
                if _is_error_reply(m):
                    raise BenchmarkFailed(f"{self.topic}: an error reply: {m.headers()}")
                key = m.key()
                assert key is not None
                seen.add(key)
                got += 1
                if self.sample is None:
                    self.sample = m.value()
            if got and not first_s:
                first_s, first_count = time.perf_counter() - started, len(seen)
        last_s = time.perf_counter() - started
        if first_count < n and last_s > first_s:
            steady = (n - first_count) / (last_s - first_s)
        else:
            steady = float("nan")  # everything arrived at once: no steady state to see
        return Drain(records=n, seconds=last_s, first_result_s=first_s, steady_rate=steady)

    def close(self) -> None:
        self.consumer.close()


def _is_error_reply(message: Any) -> bool:
    return any(name == ERROR for name, _ in message.headers() or ())


def timed_drain(
    what: str,
    run: Callable[[], None],
    stop: Callable[[], None],
    *,
    bootstrap: str,
    topic: str,
    partitions: int,
    n: int,
    timeout: float,
    in_process: bool = False,
) -> tuple[Drain, bytes | None]:
    """Time ``run`` (until ``stop``) filling ``topic`` with n results.

    By default the drainer runs in a forked child process, as a worker runs in production,
    so the counter here never competes with it for the GIL; ``in_process`` runs it in a
    thread of this process instead (for ``--profile``).
    """
    # Fork before this process has a Kafka client of its own: a child forked while
    # librdkafka threads run here can inherit one of their locks held, and hang on it.
    drainer = _Thread(what, run, stop) if in_process else _Child(what, run, stop)
    try:
        counter = OutputCounter(bootstrap, topic, partitions)
        try:
            started = time.perf_counter()
            drainer.go()
            drain = counter.wait(n, started=started, timeout=timeout, alive=drainer.alive)
        finally:
            counter.close()
    finally:
        drainer.finish()
    return replace(drain, cpu_s=drainer.cpu_s), counter.sample


def timed_command(
    what: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    bootstrap: str,
    topic: str,
    partitions: int,
    n: int,
    timeout: float,
) -> tuple[Drain, bytes | None]:
    """Time the process ``argv`` filling ``topic`` with n results, from its start, so its
    interpreter start and imports are timed too; then stop it with SIGTERM.

    Its output goes to ``log``, whose last lines a failure quotes. ``cpu_s`` is the
    process's CPU time (every thread) from its start until the last result was readable.
    As deployed, the process may cache its modules' bytecode (the warm-up drains write it):
    ``PYTHONDONTWRITEBYTECODE`` would have it compile its sources at every start.
    """
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    counter = OutputCounter(bootstrap, topic, partitions)
    try:
        with log.open("wb") as out:
            started = time.perf_counter()
            process = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        try:
            drain = counter.wait(
                n, started=started, timeout=timeout, alive=lambda: process.poll() is None
            )
            drain = replace(drain, cpu_s=_cpu_s(process.pid))
        except BenchmarkFailed as exc:
            raise BenchmarkFailed(f"the {what}: {exc}\n{_tail(log)}") from None
        finally:
            _stop(process)
    finally:
        counter.close()
    if process.returncode != 0:
        raise BenchmarkFailed(f"the {what} exited with {process.returncode}\n{_tail(log)}")
    return drain, counter.sample


def _cpu_s(pid: int) -> float | None:
    """User and system CPU time of a running process, from /proc (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The fields after the command name, which may hold spaces, start at the state (3rd).
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"last lines of {log}:\n" + "\n".join(text)


class _Thread:
    def __init__(self, what: str, run: Callable[[], None], stop: Callable[[], None]) -> None:
        self.what = what
        self.stop = stop
        self.failures: list[BaseException] = []

        def target() -> None:
            try:
                run()
            except BaseException as exc:
                self.failures.append(exc)

        self.cpu_s: float | None = None  # threads share the process: not measured
        self.thread = threading.Thread(target=target, name=f"bench-{what}", daemon=True)

    def go(self) -> None:
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def finish(self) -> None:
        self.stop()
        if self.thread.ident is not None:
            self.thread.join(60)
        if self.failures:
            raise BenchmarkFailed(f"the {self.what} failed: {self.failures[0]!r}") from (
                self.failures[0]
            )


class _Child:
    def __init__(self, what: str, run: Callable[[], None], stop: Callable[[], None]) -> None:
        self.what = what
        context = multiprocessing.get_context("fork")
        stopping = context.Event()
        going = context.Event()
        cpu = context.Value("d", -1.0)

        def child() -> None:
            going.wait()
            if stopping.is_set():
                return  # finished before it went: nothing to run

            def stop_when_told() -> None:
                stopping.wait()
                stop()

            threading.Thread(target=stop_when_told, daemon=True).start()
            started = time.process_time()
            run()
            # Every thread of the process, librdkafka's included, from start to stop.
            cpu.value = time.process_time() - started

        self.stopping = stopping
        self.going = going
        self._cpu = cpu
        self.process = context.Process(target=child, name=f"bench-{what}", daemon=True)
        self.process.start()

    def go(self) -> None:
        self.going.set()

    def alive(self) -> bool:
        return self.process.is_alive()

    def finish(self) -> None:
        self.stopping.set()
        self.going.set()
        self.process.join(60)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)
        if self.process.exitcode not in (0, None):
            raise BenchmarkFailed(f"the {self.what} exited with {self.process.exitcode}")

    @property
    def cpu_s(self) -> float | None:
        return self._cpu.value if self._cpu.value >= 0 else None
