"""Streamdag vs Quix Streams: the same one-step pipeline drained by each, on one broker.

For each delivery guarantee (at_least_once, exactly_once), ``--repeats`` times (medians
are reported):

1. N requests (one 1 KB FP32 tensor ``x`` each, a ``ModelInferRequest``) are produced
   ahead of time to the inputs topic (2 partitions) of a fresh one-step pipeline whose
   model is ``y = 2 * x``. Not timed.
2. **streamdag**: a ``streamdag run`` process drains them, as deployed. Timed from the
   process's start until all N results are on the pipeline's outputs topic, read with
   ``read_committed`` by a counter in this process.
3. **Quix Streams**: a Quix Streams Application, in a process of its own started with
   the interpreter of a separate virtual environment (``.bench-venvs/quix``, created on
   first use), drains the very same records (its own consumer group) record by record:
   parse the request, ``y = 2 * x``, build and serialize a ``ModelInferResponse``,
   produce it keyed by request id, with the same guarantee. Timed the same way.

Which of the two drains first alternates between repeats; small unmeasured drains by both
warm the broker's JVM first (``--warmup``). Every result of every drain is then read back
and checked: one per request id, ``y == 2 * x``, and no duplicates with exactly_once.
Without ``--bootstrap`` a broker is started on a free port in a temporary folder and
stopped at the end whatever happens.

    .venv/bin/python benchmarks/peers.py [--requests 60000] [--repeats 3]
        [--guarantee both] [--warmup 3000] [--quix-commit-interval 0.1]
        [--partitions 2] [--batch 256] [--max-wait-ms 5] [--timeout 300]
        [--bootstrap HOST:PORT] [--json results.json] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import confluent_kafka
import numpy as np
from _broker import delete_topics, kafka_bootstrap
from _drain import BenchmarkFailed, Drain, run_main, timed_command
from _machine import machine
from _quixenv import QuixEnv, quix_env
from _rawloop import produce
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from streamdag.kafka import TopicSpec, consumer_config, ensure_topics, producer_config
from streamdag.pipeline import derive_topics, inputs_topic, load_spec, outputs_topic
from streamdag.protocol import decode_response, encode_request, response_from_bytes

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
PROTO_DIR = SRC / "streamdag" / "protocol" / "_generated"
GUARANTEES = ("at_least_once", "exactly_once")
SIDES = ("streamdag", "quix")
FLOATS = 256  # 1 KB of FP32 per request
QUICK_REQUESTS = 2_000

SPEC = """\
name: {name}
guarantee: {guarantee}
partitions: {partitions}
models:
  m:
    runtime: python
    handler: "_handlers:double"
    batch: {{max_size: {batch}, max_wait_ms: {max_wait_ms}}}
steps:
  - {{name: s, model: m}}
"""


@dataclass(frozen=True)
class Backlog:
    """The requests of one drain: request ``i`` has id ``<prefix>-<i>`` and tensor
    ``data[i]``."""

    prefix: str
    data: np.ndarray

    def x(self, key: bytes) -> np.ndarray:
        prefix, _, index = key.decode().rpartition("-")
        if prefix != self.prefix:
            raise BenchmarkFailed(f"a result for a request of another run: {key!r}")
        return self.data[int(index) : int(index) + 1]


@dataclass(frozen=True)
class Case:
    """One pipeline: its spec file, its topics and the Quix side's results topic."""

    name: str
    guarantee: str
    spec_file: Path
    folder: Path

    @property
    def source(self) -> str:
        return inputs_topic(self.name)

    @property
    def streamdag_sink(self) -> str:
        return outputs_topic(self.name)

    @property
    def quix_sink(self) -> str:
        return f"bench.{self.name}.quix"


# -- the backlog -----------------------------------------------------------------------------
def produce_requests(bootstrap: str, case: Case, n: int, seed: int) -> Backlog:
    """Fill the case's inputs topic with n requests (not timed)."""
    backlog = Backlog(
        uuid.uuid4().hex[:8], np.random.default_rng(seed).standard_normal((n, FLOATS), np.float32)
    )
    # Larger producer batches than either side's: filling the backlog is not what we time.
    producer = Producer(producer_config(bootstrap, client_id="bench-producer", **{"linger.ms": 20}))
    for i in range(n):
        rid = f"{backlog.prefix}-{i}"
        request = encode_request(case.name, {"x": backlog.data[i : i + 1]}, id=rid)
        produce(producer, case.source, rid.encode(), request.SerializeToString())
        producer.poll(0)
    if producer.flush(60):
        raise BenchmarkFailed("could not produce the requests")
    return backlog


# -- the drainers ----------------------------------------------------------------------------
def drain_streamdag(args: argparse.Namespace, bootstrap: str, case: Case, n: int) -> Drain:
    env = {
        **os.environ,
        # _handlers (the model) lives in this folder.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    command = [str(Path(sys.executable).with_name("streamdag"))]
    argv = [*command, "run", str(case.spec_file), "--bootstrap", bootstrap]
    log = case.folder / f"{case.name}.streamdag.log"
    drain, _ = timed_command(
        "streamdag worker",
        argv,
        env=env,
        log=log,
        bootstrap=bootstrap,
        topic=case.streamdag_sink,
        partitions=args.partitions,
        n=n,
        timeout=args.timeout,
    )
    return drain


def drain_quix(args: argparse.Namespace, bootstrap: str, case: Case, env: QuixEnv, n: int) -> Drain:
    group = f"bench-quix-{uuid.uuid4().hex[:8]}"
    state = case.folder / f"{group}.state"
    argv = [
        str(env.python),
        str(HERE / "_quix_app.py"),
        *("--bootstrap", bootstrap, "--source", case.source, "--sink", case.quix_sink),
        *("--group", group, "--guarantee", case.guarantee, "--proto-dir", str(PROTO_DIR)),
        *("--state-dir", str(state), "--commit-interval", str(args.quix_commit_interval)),
    ]
    # Nothing of this process's environment that could point Quix's interpreter at the
    # project's packages.
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    drain, _ = timed_command(
        "Quix Streams app",
        argv,
        env=clean,
        log=case.folder / f"{case.name}.quix.log",
        bootstrap=bootstrap,
        topic=case.quix_sink,
        partitions=args.partitions,
        n=n,
        timeout=args.timeout,
    )
    return drain


# -- the check -------------------------------------------------------------------------------
def check_results(
    bootstrap: str, topic: str, partitions: int, backlog: Backlog, guarantee: str
) -> dict[str, int]:
    """Read every committed result on ``topic``: one per request id, each ``y == 2 * x``;
    exactly_once also allows no duplicate. Returns the counts."""
    consumer = Consumer(
        consumer_config(
            bootstrap,
            f"bench-check-{uuid.uuid4().hex[:8]}",
            client_id="bench-check",
            **{"enable.partition.eof": True},
        )
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    seen: set[bytes] = set()
    records = 0
    ended: set[int] = set()
    deadline = time.monotonic() + 120
    try:
        while len(ended) < partitions:
            if time.monotonic() > deadline:
                raise BenchmarkFailed(f"{topic}: could not read to the end")
            for m in consumer.consume(1000, 0.5):
                error = m.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        ended.add(m.partition())
                        continue
                    raise BenchmarkFailed(f"{topic}: {error}")
                key = m.key()
                assert key is not None
                value = m.value()
                assert value is not None
                y = decode_response(response_from_bytes(value))["y"]
                x = backlog.x(key)
                if y.dtype != np.float32 or not np.array_equal(y, x * 2):
                    raise BenchmarkFailed(f"{topic}: a wrong result for {key.decode()}")
                seen.add(key)
                records += 1
    finally:
        consumer.close()
    n = len(backlog.data)
    if len(seen) != n:
        raise BenchmarkFailed(f"{topic}: results for {len(seen)} of {n} requests")
    if guarantee == "exactly_once" and records != n:
        raise BenchmarkFailed(f"{topic}: {records - n} duplicate results with exactly_once")
    return {"records": records, "distinct": len(seen)}


# -- one measurement -------------------------------------------------------------------------
def new_case(
    args: argparse.Namespace, bootstrap: str, folder: Path, name: str, guarantee: str
) -> tuple[Case, list[str]]:
    """A fresh pipeline (topics, consumer group) and results topic; returns its topics."""
    spec_file = folder / f"{name}.yaml"
    spec_file.write_text(
        SPEC.format(
            name=name,
            guarantee=guarantee,
            partitions=args.partitions,
            batch=args.batch,
            max_wait_ms=args.max_wait_ms,
        )
    )
    case = Case(name, guarantee, spec_file, folder)
    topics = [*derive_topics(load_spec(spec_file)), TopicSpec(case.quix_sink, args.partitions)]
    ensure_topics(bootstrap, topics)
    return case, [t.name for t in topics]


def measure(
    args: argparse.Namespace, bootstrap: str, case: Case, env: QuixEnv, repeat: int
) -> dict[str, Any]:
    """Fill the inputs topic, drain it with each side (in turns), check both outputs."""
    started = time.perf_counter()
    backlog = produce_requests(bootstrap, case, args.requests, seed=repeat)
    produce_s = time.perf_counter() - started
    streamdag_first = repeat % 2 == 0
    drains: dict[str, Drain] = {}
    for side in SIDES if streamdag_first else reversed(SIDES):
        if side == "streamdag":
            drains[side] = drain_streamdag(args, bootstrap, case, args.requests)
        else:
            drains[side] = drain_quix(args, bootstrap, case, env, args.requests)
    checks = {
        "streamdag": check_results(
            bootstrap, case.streamdag_sink, args.partitions, backlog, case.guarantee
        ),
        "quix": check_results(bootstrap, case.quix_sink, args.partitions, backlog, case.guarantee),
    }
    s, q = drains["streamdag"], drains["quix"]
    return {
        "repeat": repeat + 1,
        "first": "streamdag" if streamdag_first else "quix",
        "produce_s": produce_s,
        "streamdag": _as_dict(s),
        "quix": _as_dict(q),
        "ratio": s.rate / q.rate,
        "checks": checks,
    }


def summarize(guarantee: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats, per side; the ratio is the ratio of the medians."""

    def median(side: str, key: str) -> float:
        return statistics.median(float(r[side][key]) for r in runs)

    row: dict[str, Any] = {"guarantee": guarantee}
    for side in SIDES:
        for key in ("rate", "steady_rate", "first_result_s", "cpu_us_per_record"):
            row[f"{side}_{key}"] = median(side, key)
    row["ratio"] = row["streamdag_rate"] / row["quix_rate"]
    row["steady_ratio"] = row["streamdag_steady_rate"] / row["quix_steady_rate"]
    row["runs"] = runs
    return row


def warm_up(
    args: argparse.Namespace, bootstrap: str, folder: Path, env: QuixEnv, created: list[str]
) -> None:
    """A fresh broker's JVM is cold: each side drains a small backlog once per guarantee,
    unmeasured, so the first measured drain does not pay for JIT compilation."""
    for guarantee in args.guarantees:
        name = f"peers-warmup-{guarantee.replace('_', '-')}-{args.run_id}"
        case, topics = new_case(args, bootstrap, folder, name, guarantee)
        created += topics
        produce_requests(bootstrap, case, args.warmup, seed=0)
        drain_streamdag(args, bootstrap, case, args.warmup)
        drain_quix(args, bootstrap, case, env, args.warmup)


# -- reporting -------------------------------------------------------------------------------
def table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'guarantee':<14} {'streamdag rec/s':>15} {'quix rec/s':>10} {'ratio':>6}"
        f"   {'streamdag steady':>16} {'quix steady':>11} {'ratio':>6}"
        f"   {'streamdag 1st':>13} {'quix 1st':>8}"
        f"   {'streamdag CPU':>13} {'quix CPU':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['guarantee']:<14} {r['streamdag_rate']:>15,.0f} {r['quix_rate']:>10,.0f}"
            f" {r['ratio']:>6.2f}   {r['streamdag_steady_rate']:>16,.0f}"
            f" {r['quix_steady_rate']:>11,.0f} {r['steady_ratio']:>6.2f}"
            f"   {r['streamdag_first_result_s']:>12.2f}s {r['quix_first_result_s']:>7.2f}s"
            f"   {r['streamdag_cpu_us_per_record']:>10.1f} us"
            f" {r['quix_cpu_us_per_record']:>5.1f} us"
        )
    return "\n".join(lines)


def _as_dict(drain: Drain) -> dict[str, Any]:
    return {**asdict(drain), "rate": drain.rate, "cpu_us_per_record": drain.cpu_us_per_record}


def versions(env: QuixEnv) -> dict[str, Any]:
    return {
        "streamdag": {
            "streamdag": importlib.metadata.version("streamdag"),
            "confluent-kafka": importlib.metadata.version("confluent-kafka"),
            "librdkafka": confluent_kafka.libversion()[0],
            "protobuf": importlib.metadata.version("protobuf"),
            "numpy": importlib.metadata.version("numpy"),
        },
        "quix": env.versions,
    }


# -- main ------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=60_000, help="requests per drain")
    parser.add_argument(
        "--repeats", "--repeat", type=int, default=3, help="runs per guarantee (median)"
    )
    parser.add_argument(
        "--guarantee", choices=[*GUARANTEES, "both"], default="both", help="which to measure"
    )
    parser.add_argument(
        "--warmup", type=int, default=3_000, help="requests drained unmeasured first (0: none)"
    )
    parser.add_argument("--partitions", type=int, default=2, help="partitions of every topic")
    parser.add_argument("--batch", type=int, default=256, help="streamdag's batch max_size")
    parser.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="streamdag's batch max_wait_ms"
    )
    parser.add_argument(
        "--quix-commit-interval",
        type=float,
        default=0.1,
        help="seconds between Quix's checkpoints (its own default is 5)",
    )
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per drain")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK_REQUESTS:,} requests, 1 repeat, no warm-up",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.repeats, args.warmup = QUICK_REQUESTS, 1, 0
    if args.requests < 1 or args.repeats < 1 or args.warmup < 0 or args.partitions < 1:
        parser.error("--requests, --repeats and --partitions must be at least 1, --warmup 0")
    args.guarantees = GUARANTEES if args.guarantee == "both" else (args.guarantee,)
    args.run_id = uuid.uuid4().hex[:6]
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    command = shlex.join(sys.orig_argv)
    print(f"command: {command}", flush=True)
    env = quix_env()
    if env.created_s:
        print(f"Quix Streams environment ready in {env.created_s:.0f}s: {env.folder}", flush=True)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    # Other work on the machine skews every figure; the load average shows if there was any.
    load_before = os.getloadavg()
    with (
        kafka_bootstrap(args.bootstrap) as bootstrap,
        tempfile.TemporaryDirectory(prefix="streamdag-peers-") as tmp,
    ):
        folder = Path(tmp)
        created: list[str] = []
        try:
            if args.warmup:
                warm_up(args, bootstrap, folder, env, created)
            for guarantee in args.guarantees:
                runs = []
                for repeat in range(args.repeats):
                    name = f"peers-{guarantee.replace('_', '-')}-{args.run_id}-{repeat + 1}"
                    case, topics = new_case(args, bootstrap, folder, name, guarantee)
                    created += topics
                    run = measure(args, bootstrap, case, env, repeat)
                    s, q = run["streamdag"], run["quix"]
                    print(
                        f"{guarantee} run {repeat + 1}/{args.repeats}: streamdag"
                        f" {s['rate']:,.0f} rec/s, Quix {q['rate']:,.0f} rec/s, ratio"
                        f" {run['ratio']:.2f} ({run['first']} first; produce"
                        f" {run['produce_s']:.1f}s; results checked)",
                        flush=True,
                    )
                    runs.append(run)
                rows.append(summarize(guarantee, runs))
        finally:
            if args.bootstrap and created:
                delete_topics(bootstrap, created)
    load_after = os.getloadavg()
    found = versions(env)
    print()
    print(
        f"{args.requests} requests of {FLOATS * 4} B, {args.partitions} partitions;"
        f" streamdag batch max_size {args.batch} / max_wait_ms {args.max_wait_ms:g};"
        f" Quix commit_interval {args.quix_commit_interval:g}s; medians of {args.repeats}"
        f" run(s); total {time.perf_counter() - started:.0f}s; load average (1 min)"
        f" {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(f"streamdag: {found['streamdag']}")
    print(f"Quix:      {found['quix']}")
    print(f"machine:   {machine()}")
    print(table(rows))
    for row in rows:
        print(f"{row['guarantee']}: streamdag / Quix = {row['ratio']:.2f}")
    if args.json is not None:
        result = {
            "benchmark": "peers",
            "command": command,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": load_after},
            "versions": found,
            "params": {
                "requests": args.requests,
                "request_bytes": FLOATS * 4,
                "partitions": args.partitions,
                "batch_max_size": args.batch,
                "batch_max_wait_ms": args.max_wait_ms,
                "quix_commit_interval_s": args.quix_commit_interval,
                "repeats": args.repeats,
                "warmup": args.warmup,
            },
            "results": rows,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
