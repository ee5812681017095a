"""The processes the demo starts and stops: a local broker and ``streamdag run`` workers.

Each runs in its own session, so a Ctrl-C in the terminal reaches only the demo, which
then stops them in order (gateway, workers, broker) by pid. Nothing outlives the demo
unless it is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from streamdag.broker import LocalBroker, free_port
from streamdag.demo.console import Say
from streamdag.errors import StreamdagError
from streamdag.kafka import KafkaConnection
from streamdag.settings import get_settings

__all__ = ["Worker", "WorkerDied", "Workers", "kafka"]


@contextlib.contextmanager
def kafka(cluster: KafkaConnection | None, data_dir: Path, say: Say) -> Iterator[KafkaConnection]:
    """``cluster`` if given, else a local broker on a free port, stopped on exit."""
    if cluster is not None:
        say(f"using the Kafka cluster at {cluster}")
        yield cluster
        return
    settings = get_settings()
    broker = LocalBroker(data_dir, libs_dir=settings.kafka_libs, java_home=settings.java_home)
    say("starting a local Kafka broker ...")
    started = time.perf_counter()
    try:
        info = broker.start(port=free_port(), timeout=90)
    except BaseException:
        # Interrupted while it came up: the JVM may run already.
        if broker.status() is not None:
            broker.stop()
        raise
    say(f"broker ready at {info.bootstrap} ({time.perf_counter() - started:.1f} s)")
    try:
        yield KafkaConnection(bootstrap_servers=info.bootstrap)
    finally:
        say("stopping the broker ...")
        try:
            broker.stop()
        except BaseException:
            if broker.status() is not None:
                broker.stop(timeout=5)
            raise


class WorkerDied(StreamdagError):
    """A worker process ended while the demo needed it."""


@dataclass
class Worker:
    steps: list[str]
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Workers:
    """``streamdag run SPEC --steps ...`` processes, one per group of steps.

    ``with Workers(...) as workers:`` starts them; leaving the block sends each SIGTERM
    (finish the batch in flight, commit, leave the group), waits, and SIGKILLs stragglers.
    """

    def __init__(
        self,
        spec: Path,
        cluster: KafkaConnection,
        groups: Sequence[Sequence[str]],
        log_dir: Path,
        *,
        kafka_config: Path | None = None,
    ) -> None:
        self.spec = spec
        self.cluster = cluster
        self.kafka_config = kafka_config
        self.groups = [list(g) for g in groups if g]
        self.log_dir = log_dir
        self.workers: list[Worker] = []

    def command(self, steps: Sequence[str]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "streamdag.cli.main",
            "run",
            str(self.spec),
            "--bootstrap",
            self.cluster.bootstrap_servers,
            *(["--kafka-config", str(self.kafka_config)] if self.kafka_config else []),
            "--steps",
            ",".join(steps),
        ]

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for i, steps in enumerate(self.groups):
            log = self.log_dir / f"worker-{i}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    self.command(steps),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self.workers.append(Worker(steps, log, process))

    def check(self) -> None:
        """Raise ``WorkerDied`` with the end of its log if a worker has exited."""
        for worker in self.workers:
            code = worker.process.poll()
            if code is not None:
                raise WorkerDied(
                    f"the worker of {','.join(worker.steps)} (pid {worker.pid}) exited with "
                    f"status {code}; the end of its log:\n{worker.tail()}"
                )

    def stop(self, timeout: float = 30.0) -> None:
        running = [w for w in self.workers if w.process.poll() is None]
        for worker in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        try:
            for worker in running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(max(0.1, deadline - time.monotonic()))
        finally:  # also when the wait was interrupted: nothing may outlive the demo
            for worker in running:
                if worker.process.poll() is None:
                    worker.process.kill()
                    worker.process.wait(10)

    def __enter__(self) -> Workers:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
