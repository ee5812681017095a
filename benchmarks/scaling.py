"""Scaling out: how fast one step drains a backlog with 1, 2, 3... worker processes.

Scaling in streamdag is by processes: each ``streamdag run`` of a step joins the step's
consumer group and takes a share of its partitions. This benchmark measures what adding
workers buys, against the one-worker drain of the same model measured in the same run.

For each model kind, partition count and number of workers:

1. A fresh one-step pipeline (fresh topics, fresh consumer group) is created.
2. That many ``streamdag run`` processes start; the benchmark waits until the step's
   group is stable with every worker in it and every partition assigned.
3. N requests are written to the inputs topic in one Kafka transaction. The workers read
   ``read_committed``, so all N become visible at once when it commits; the clock starts
   there and stops when the pipeline's outputs topic holds all N results. With
   ``--from-start`` the N requests are queued before the workers start, and the clock
   runs from their start: start-up and the group's join count, as a user waits for them.

Two model kinds, each costing ``--cost-ms`` per request:

- ``wait``: the model sleeps, as a step waits on an accelerator, a native runtime that
  releases the GIL, or a remote OIP server (``runtime: oip``). Workers add capacity until
  partitions run out.
- ``cpu``: the model spins in Python, holding the GIL. Each worker is one core at most,
  so on an N-core machine adding workers beyond N buys nothing.

A last row runs the most workers on a one-partition pipeline: a partition is read by one
worker of a group at a time, so partitions bound a step's parallelism.

    .venv/bin/python benchmarks/scaling.py [--requests 4000] [--cost-ms 1]
        [--workers 1,2,3,6] [--partitions 6] [--kinds wait,cpu] [--one-parent] [--from-start]
        [--bootstrap HOST:PORT] [--json results.json]

``--one-parent`` starts N workers as one ``streamdag run --processes N`` (a parent that
supervises N children) instead of N separate processes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _broker import kafka_bootstrap
from _drain import BenchmarkFailed, OutputCounter
from _machine import machine
from confluent_kafka import ConsumerGroupState, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from streamdag.kafka import admin_config, ensure_topics, producer_config
from streamdag.pipeline import consumer_group, derive_topics, inputs_topic, load_spec, outputs_topic
from streamdag.protocol import decode_response, encode_request, response_from_bytes

HERE = Path(__file__).resolve().parent
KINDS = ("wait", "cpu")
FLOATS = 256  # 1 KB of FP32 per request

SPEC = """\
name: {name}
guarantee: {guarantee}
partitions: {partitions}
models:
  m:
    runtime: python
    handler: "_handlers:{handler}"
    batch: {{max_size: {batch}, max_wait_ms: 5}}
steps:
  - {{name: s, model: m}}
"""


@dataclass(frozen=True)
class Case:
    kind: str
    partitions: int
    workers: int


@dataclass(frozen=True)
class Result:
    case: Case
    rate: float  # results per second, from the commit of the backlog to the last result
    seconds: float
    join_s: float  # from the workers' start until their group was stable

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.case.kind,
            "partitions": self.case.partitions,
            "workers": self.case.workers,
            "rate": self.rate,
            "seconds": self.seconds,
            "join_s": self.join_s,
        }


# -- the workers -----------------------------------------------------------------------------
class Workers:
    """``streamdag run`` processes of one pipeline, logging to a folder."""

    def __init__(
        self, spec_file: Path, bootstrap: str, count: int, cost_ms: float, *, one_parent: bool
    ) -> None:
        # One `streamdag run --processes N`, or N `streamdag run` of their own.
        self.count = count  # group members to expect
        starts = 1 if one_parent else count
        extra = ["--processes", str(count)] if one_parent else []
        self.logs = [spec_file.with_suffix(f".worker-{i}.log") for i in range(starts)]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
            "BENCH_COST_MS": str(cost_ms),
        }
        command = [str(Path(sys.executable).with_name("streamdag"))]
        self.procs: list[subprocess.Popen[bytes]] = []
        for log_path in self.logs:
            with log_path.open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [*command, "run", str(spec_file), "--bootstrap", bootstrap, *extra],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=env,
                    )
                )

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def failure(self) -> str:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() not in (None, 0):
                tail = log.read_text(errors="replace").splitlines()[-15:]
                return f"worker {proc.pid} exited with {proc.returncode}:\n" + "\n".join(tail)
        return "a worker stopped"

    def stop(self) -> None:
        """SIGTERM each worker (they finish their batch and leave the group), then wait."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_until_stable(
    admin: AdminClient, group: str, workers: Workers, partitions: int, timeout: float
) -> None:
    """Until the group is stable with every worker a member and every partition assigned."""
    deadline = time.monotonic() + timeout
    seen = "nothing yet"
    while time.monotonic() < deadline:
        if not workers.alive():
            raise BenchmarkFailed(workers.failure())
        try:
            description = admin.describe_consumer_groups([group])[group].result(10)
        except KafkaException as exc:  # the group or its coordinator is not there yet
            seen = str(exc)
            time.sleep(0.2)
            continue
        assigned = sum(len(m.assignment.topic_partitions) for m in description.members)
        seen = f"{description.state.name}, {len(description.members)} members, {assigned} assigned"
        if (
            description.state == ConsumerGroupState.STABLE
            and len(description.members) == workers.count
            and assigned == partitions
            # Not between the two rounds of a cooperative rebalance: everyone has work.
            and (
                partitions < workers.count
                or all(m.assignment.topic_partitions for m in description.members)
            )
        ):
            return
        time.sleep(0.2)
    raise BenchmarkFailed(f"group {group} not stable after {timeout}s ({seen})")


# -- the backlog -----------------------------------------------------------------------------
def stage_backlog(bootstrap: str, topic: str, n: int) -> Producer:
    """N requests written in one open transaction; the caller commits it to release them."""
    producer = Producer(
        producer_config(
            bootstrap,
            client_id="bench-backlog",
            **{"transactional.id": f"bench-backlog-{uuid.uuid4().hex[:8]}", "linger.ms": 20},
        )
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    data = np.random.default_rng(0).standard_normal((n, FLOATS), dtype=np.float32)
    for i in range(n):
        rid = uuid.uuid4().hex
        value = encode_request("bench", {"x": data[i : i + 1]}, id=rid).SerializeToString()
        while True:
            try:
                producer.produce(topic, value, rid.encode(), headers=[("x-request-id", rid)])
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise BenchmarkFailed("could not write the backlog")
    return producer


# -- one case --------------------------------------------------------------------------------
def run_case(
    args: argparse.Namespace, bootstrap: str, admin: AdminClient, folder: Path, case: Case
) -> Result:
    name = f"scale-{case.kind}-{case.partitions}p-{case.workers}w-{uuid.uuid4().hex[:6]}"
    spec_file = folder / f"{name}.yaml"
    spec_file.write_text(
        SPEC.format(
            name=name,
            guarantee=args.guarantee,
            partitions=case.partitions,
            handler="spin" if case.kind == "cpu" else "sleep",
            batch=args.batch,
        )
    )
    spec = load_spec(spec_file)
    topics = derive_topics(spec)
    ensure_topics(bootstrap, topics)
    if args.from_start:
        return _from_start(args, admin, bootstrap, case, spec_file, name, topics)
    try:
        started = time.monotonic()
        workers = Workers(
            spec_file, bootstrap, case.workers, args.cost_ms, one_parent=args.one_parent
        )
        try:
            wait_until_stable(
                admin, consumer_group(name, "s"), workers, case.partitions, args.timeout
            )
            join_s = time.monotonic() - started
            counter = OutputCounter(bootstrap, outputs_topic(name), case.partitions)
            try:
                backlog = stage_backlog(bootstrap, inputs_topic(name), args.requests)
                released = time.perf_counter()
                backlog.commit_transaction(30)
                drain = counter.wait(
                    args.requests, started=released, timeout=args.timeout, alive=workers.alive
                )
                sample = counter.sample
            finally:
                counter.close()
        except BenchmarkFailed as exc:
            raise _why(workers, exc) from None
        finally:
            workers.stop()
    finally:
        _delete(admin, topics)
    if sample is None:
        raise BenchmarkFailed("no result to check")
    y = decode_response(response_from_bytes(sample))["y"]
    if y.dtype != np.float32 or y.shape != (1, FLOATS):
        raise BenchmarkFailed(f"unexpected result: {y.dtype} {y.shape}")
    return Result(case, drain.rate, drain.seconds, join_s)


def _delete(admin: Any, topics: list[Any]) -> None:
    for future in admin.delete_topics([t.name for t in topics]).values():
        try:
            future.result(30)
        except Exception as exc:
            print(f"could not delete a benchmark topic: {exc}", file=sys.stderr)


def _why(workers: Workers, exc: BenchmarkFailed) -> BenchmarkFailed:
    """The failure to report for a drain that failed: a worker's death, if one died."""
    return exc if workers.alive() else BenchmarkFailed(workers.failure())


def _from_start(
    args: argparse.Namespace,
    admin: Any,
    bootstrap: str,
    case: Case,
    spec_file: Path,
    name: str,
    topics: list[Any],
) -> Result:
    """The backlog is queued first; the clock starts when the workers are started and
    stops when the last result is in: start-up and the group's join included, as a user
    who starts workers for queued work waits for them."""
    try:
        counter = OutputCounter(bootstrap, outputs_topic(name), case.partitions)
        try:
            stage_backlog(bootstrap, inputs_topic(name), args.requests).commit_transaction(30)
            started = time.perf_counter()
            workers = Workers(
                spec_file, bootstrap, case.workers, args.cost_ms, one_parent=args.one_parent
            )
            try:
                drain = counter.wait(
                    args.requests, started=started, timeout=args.timeout, alive=workers.alive
                )
            except BenchmarkFailed as exc:
                raise _why(workers, exc) from None
            finally:
                workers.stop()
        finally:
            counter.close()
    finally:
        _delete(admin, topics)
    return Result(case, drain.rate, drain.seconds, math.nan)


def cases(args: argparse.Namespace) -> list[Case]:
    planned = [Case(kind, args.partitions, k) for kind in args.kinds for k in args.workers]
    if "wait" in args.kinds and args.partitions > 1:
        planned.append(Case("wait", 1, max(args.workers)))
    return planned


# -- reporting -------------------------------------------------------------------------------
def table(results: list[Result]) -> str:
    """Each rate against the one-worker rate of the same kind on ``partitions`` partitions."""
    base = {r.case.kind: r.rate for r in results if r.case.workers == 1}
    header = (
        f"{'model':<6} {'partitions':>10} {'workers':>7} {'rec/s':>8} {'x 1 worker':>10}"
        f" {'drain s':>8} {'join s':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        ratio = r.rate / base[r.case.kind] if r.case.kind in base else float("nan")
        lines.append(
            f"{r.case.kind:<6} {r.case.partitions:>10} {r.case.workers:>7} {r.rate:>8,.0f}"
            f" {ratio:>10.2f} {r.seconds:>8.2f} {r.join_s:>7.1f}"
        )
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------
def _counts(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every count must be 1 or more")
    return sorted(set(values))


def _kinds(text: str) -> list[str]:
    kinds = [k for k in text.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"model kinds are {', '.join(KINDS)}; got {text!r}")
    return kinds


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4_000, help="requests per drain")
    parser.add_argument(
        "--cost-ms", type=float, default=1.0, help="the model's cost per request, ms"
    )
    parser.add_argument(
        "--workers", type=_counts, default=[1, 2, 3, 6], help="worker processes to try"
    )
    parser.add_argument("--partitions", type=int, default=6, help="partitions of every topic")
    parser.add_argument(
        "--kinds", type=_kinds, default=list(KINDS), help="model kinds: wait, cpu or both"
    )
    parser.add_argument("--batch", type=int, default=32, help="batch max_size")
    parser.add_argument(
        "--guarantee", choices=["exactly_once", "at_least_once"], default="at_least_once"
    )
    parser.add_argument(
        "--one-parent",
        action="store_true",
        help="start N workers as one `streamdag run --processes N` instead of N processes",
    )
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per wait")
    parser.add_argument(
        "--from-start",
        action="store_true",
        help="queue the backlog first and time from the workers' start (start-up and the "
        "group's join included) until every result is in",
    )
    args = parser.parse_args(argv)
    if 1 not in args.workers:
        parser.error("--workers must include 1: every figure is a ratio to one worker")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "benchmarks/scaling.py", *argv])
    print(f"Command: {command}", flush=True)
    began = time.perf_counter()
    load_before = os.getloadavg()[0]
    results: list[Result] = []
    try:
        with (
            kafka_bootstrap(args.bootstrap) as bootstrap,
            tempfile.TemporaryDirectory(prefix="streamdag-scaling-") as tmp,
        ):
            admin = AdminClient(admin_config(bootstrap))
            for case in cases(args):
                result = run_case(args, bootstrap, admin, Path(tmp), case)
                print(
                    f"{case.kind} model, {case.partitions} partitions, {case.workers} worker(s):"
                    f" {result.rate:,.0f} rec/s ({result.seconds:.2f}s;"
                    f" group stable after {result.join_s:.1f}s)",
                    flush=True,
                )
                results.append(result)
    except BenchmarkFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print()
    print(
        f"{args.requests} requests of 1024 B, model cost {args.cost_ms:g} ms per request,"
        f" batch max_size {args.batch}, {args.guarantee}; total"
        f" {time.perf_counter() - began:.0f}s; load average (1 min) {load_before:.2f} before,"
        f" {os.getloadavg()[0]:.2f} after; {machine()['nproc']} CPUs"
    )
    print(table(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "scaling",
                    "command": command,
                    "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "machine": machine(),
                    "settings": {
                        k: v for k, v in vars(args).items() if k not in ("json", "bootstrap")
                    },
                    "results": [r.as_dict() for r in results],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
