"""Helpers for integration tests against the real broker: send requests, read results,
run `streamdag run` as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer

from streamdag.engine import PipelineRunner
from streamdag.kafka import producer_config
from streamdag.kafka.headers import ERROR, ErrorInfo, get_header
from streamdag.pipeline import PipelineSpec, compile_plan
from streamdag.protocol import decode_response, encode_request, response_from_bytes


def send_requests(
    bootstrap: str,
    pipeline: str,
    arrays_by_id: Iterable[tuple[str, dict[str, np.ndarray]]],
    headers: list[tuple[str, bytes]] | None = None,
) -> list[str]:
    """Produce requests (protobuf) to the pipeline's inputs topic, keyed by request id."""
    # The project's producer settings: murmur2 keys, so each request sits on the partition
    # that every other topic of the pipeline uses for the same request id.
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 5}))
    ids = []
    for rid, arrays in arrays_by_id:
        request = encode_request(pipeline, arrays, id=rid)
        producer.produce(
            f"streamdag.{pipeline}.inputs",
            request.SerializeToString(),
            rid.encode(),
            headers=list(headers or []),
        )
        ids.append(rid)
        producer.poll(0)
    assert producer.flush(30) == 0
    return ids


@dataclass
class Result:
    request_id: str
    arrays: dict[str, np.ndarray]
    error: ErrorInfo | None
    headers: dict[str, bytes]


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: int | None = None,
    keys: Collection[str] = (),
    timeout: float = 60.0,
    settle: float = 0.0,
) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """Every committed record of ``topic`` from the start, until ``until`` records arrived,
    or a record of each of ``keys`` (then ``settle`` more seconds, to catch duplicates), or
    ``timeout``."""
    missing = {k.encode() for k in keys}
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            records.append((msg.key(), msg.value() or b"", list(msg.headers() or [])))
            missing.discard(msg.key() or b"")
            enough = len(records) >= until if until is not None else not missing
            if enough and settle_until is None:
                settle_until = time.monotonic() + settle
    finally:
        consumer.close()
    return records


def read_results(
    bootstrap: str,
    pipeline: str,
    *,
    until: int | None = None,
    keys: Collection[str] = (),
    timeout: float = 60.0,
    settle: float = 0.0,
    topic: str | None = None,
) -> list[Result]:
    results = []
    for key, value, headers in read_topic(
        bootstrap,
        topic or f"streamdag.{pipeline}.outputs",
        until=until,
        keys=keys,
        timeout=timeout,
        settle=settle,
    ):
        error = get_header(headers, ERROR)
        arrays = {} if error else decode_response(response_from_bytes(value))
        results.append(
            Result(
                request_id=(key or b"").decode(),
                arrays=arrays,
                error=ErrorInfo.decode(error) if error else None,
                headers={k: v for k, v in headers},
            )
        )
    return results


class Workers:
    """`streamdag run` (or ``serve``) processes of one pipeline, started and killed like a
    supervisor would."""

    def __init__(self, spec: Path, bootstrap: str, log_dir: Path) -> None:
        self.spec = spec
        self.bootstrap = bootstrap
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        *args: str,
        command: str = "run",
        env: dict[str, str] | None = None,
        spec: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """``streamdag <command> <spec> --bootstrap ... <args>``; ``spec`` defaults to
        the pipeline's."""
        log = (self.log_dir / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamdag.cli.main",
                command,
                str(spec or self.spec),
                "--bootstrap",
                self.bootstrap,
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.spec.parent,
            env=None if env is None else {**os.environ, **env},
        )
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def terminate(self, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.log_dir / f"worker-{self.procs.index(proc)}.log").read_text()

    def wait_for_log(self, proc: subprocess.Popen[bytes], text: str, timeout: float = 60) -> str:
        """Wait until ``proc``'s log holds ``text``; return the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log_of(proc)
            if text in log:
                return log
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared in the log:\n{self.log_of(proc)}")

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.log_dir.glob("worker-*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def count_by_id(results: Sequence[Result]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.request_id] = counts.get(r.request_id, 0) + 1
    return counts


@contextmanager
def run_pipeline(spec: PipelineSpec, bootstrap: str, **options: Any) -> Iterator[PipelineRunner]:
    """The pipeline's workers in a thread of this process; stopped on exit, and a failure
    of theirs fails the test."""
    runner = PipelineRunner(compile_plan(spec), bootstrap, **options)
    failures: list[BaseException] = []

    def target() -> None:
        try:
            runner.run()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner.stop()
        thread.join(60)
    assert not thread.is_alive(), "runner did not stop"
    assert not failures, failures
