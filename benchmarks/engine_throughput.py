"""Engine throughput: how fast one pipeline step drains a backlog, against the raw ceiling.

For each delivery guarantee:

1. N requests (one 1 KB FP32 tensor each) are produced ahead of time to the inputs topic
   of a one-step pipeline whose model costs next to nothing (``y = 2 * x``). Not timed.
2. The engine (``PipelineRunner``) drains them. Timed from runner start until all N
   results are on the pipeline's outputs topic, read with ``read_committed``.
3. The baseline drains the very same records (same topic, its own consumer group) with a
   raw confluent-kafka consume -> produce loop that gives the same guarantee with the same
   batch size and the same client configs, copying key and value bytes to a topic of its
   own: no protobuf, no numpy, no headers. It is the ceiling for any engine on this
   broker and machine, timed the same way.

    .venv/bin/python benchmarks/engine_throughput.py [--requests 20000] [--partitions 6]
        [--batch 256] [--max-wait-ms 5] [--guarantee both] [--bootstrap HOST:PORT]
        [--json results.json] [--profile DIR]

Without ``--bootstrap`` a broker is started on a free port in a temporary folder and
stopped at the end whatever happens.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _broker import kafka_bootstrap
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streamdag.engine import PipelineRunner, StepWorker
from streamdag.kafka import (
    TopicSpec,
    admin_config,
    consumer_config,
    ensure_topics,
    list_topics,
    producer_config,
)
from streamdag.kafka.headers import ERROR
from streamdag.pipeline import PipelineSpec, derive_topics, inputs_topic, outputs_topic, parse_spec
from streamdag.protocol import decode_response, encode_request, response_from_bytes

HERE = Path(__file__).resolve().parent
GUARANTEES = ("exactly_once", "at_least_once")
FLOATS = 256  # 1 KB of FP32 per request

# The group settings StepWorker gives its consumer (engine/worker.py), so that the
# baseline joins and heartbeats the same way.
WORKER_CONSUMER = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1500,
    "max.poll.interval.ms": 300_000,
}
# As TransactionalDelivery (engine/delivery.py).
TRANSACTION_TIMEOUT_MS = 10_000
CALL_TIMEOUT_S = 30.0

log = logging.getLogger("benchmarks.engine_throughput")


class BenchmarkFailed(Exception):
    pass


# -- measuring ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Drain:
    """One drain of the backlog; times in seconds from the drainer's start."""

    records: int
    seconds: float  # until the last result was readable
    first_result_s: float  # until the first results were readable (group join, init)
    steady_rate: float  # results per second after the first ones were readable

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
            messages = self.consumer.consume(10_000, 0.05)
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
        steady = (n - first_count) / (last_s - first_s) if last_s > first_s else float("nan")
        return Drain(records=n, seconds=last_s, first_result_s=first_s, steady_rate=steady)

    def close(self) -> None:
        self.consumer.close()


def _is_error_reply(message: Any) -> bool:
    return any(name == ERROR for name, _ in message.headers() or ())


def _drain(
    bootstrap: str,
    topic: str,
    partitions: int,
    n: int,
    timeout: float,
    start: Callable[[], threading.Thread],
    stop: Callable[[], None],
) -> tuple[Drain, bytes | None]:
    counter = OutputCounter(bootstrap, topic, partitions)
    try:
        started = time.perf_counter()
        thread = start()
        try:
            drain = counter.wait(n, started=started, timeout=timeout, alive=thread.is_alive)
        finally:
            stop()
            thread.join(60)
        return drain, counter.sample
    finally:
        counter.close()


def _thread(
    target: Callable[[], None], name: str, failures: list[BaseException]
) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


# -- the engine --------------------------------------------------------------------------
def pipeline_spec(
    name: str, guarantee: str, partitions: int, batch: int, wait_ms: float
) -> PipelineSpec:
    return parse_spec(
        {
            "name": name,
            "guarantee": guarantee,
            "partitions": partitions,
            "models": {
                "m": {
                    "runtime": "python",
                    "handler": "_handlers:double",
                    "batch": {"max_size": batch, "max_wait_ms": wait_ms},
                }
            },
            "steps": [{"name": "s", "model": "m"}],
        },
        base_dir=HERE,
    )


@contextmanager
def profiled(directory: Path | None, label: str) -> Iterator[None]:
    """With a directory: cProfile the step worker thread and its model thread (the threads
    the engine spends its time in) and write ``<label>.worker.prof`` / ``.model.prof``."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    run, process = StepWorker.run, StepWorker._process
    worker_prof, model_prof = cProfile.Profile(), cProfile.Profile()

    def run_profiled(self: StepWorker) -> None:
        worker_prof.runcall(run, self)

    def process_profiled(self: StepWorker, messages: Sequence[Any]) -> Any:
        return model_prof.runcall(process, self, messages)

    StepWorker.run = run_profiled  # type: ignore[method-assign]
    StepWorker._process = process_profiled  # type: ignore[method-assign]
    try:
        yield
    finally:
        StepWorker.run, StepWorker._process = run, process  # type: ignore[method-assign]
        worker_prof.dump_stats(directory / f"{label}.worker.prof")
        model_prof.dump_stats(directory / f"{label}.model.prof")


def drain_engine(
    bootstrap: str, spec: PipelineSpec, n: int, timeout: float, profile: Path | None, label: str
) -> Drain:
    runner = PipelineRunner(spec, bootstrap)
    failures: list[BaseException] = []
    with profiled(profile, label):
        drain, sample = _drain(
            bootstrap,
            outputs_topic(spec.name),
            spec.partitions,
            n,
            timeout,
            start=lambda: _thread(runner.run, "bench-engine", failures),
            stop=runner.stop,
        )
    if failures:
        raise BenchmarkFailed(f"the engine failed: {failures[0]!r}")
    if sample is None:
        raise BenchmarkFailed("no result to check")
    y = decode_response(response_from_bytes(sample))["y"]
    if y.dtype != np.float32 or y.shape != (1, FLOATS):
        raise BenchmarkFailed(f"unexpected result: {y.dtype} {y.shape}")
    return drain


# -- the baseline --------------------------------------------------------------------------
def _next_offsets(messages: Sequence[Any]) -> list[TopicPartition]:
    nxt: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic(), m.partition())
        nxt[key] = max(nxt.get(key, 0), m.offset() + 1)
    return [TopicPartition(t, p, o) for (t, p), o in nxt.items()]


def _produce(producer: Producer, topic: str, key: bytes | None, value: bytes | None) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.05)


class RawLoop:
    """The ceiling: consume a batch, copy its bytes to ``sink``, commit, with the guarantee.

    exactly_once: begin_transaction, produce, send_offsets_to_transaction,
    commit_transaction. at_least_once: produce (idempotent), flush, synchronous commit.
    """

    def __init__(
        self, bootstrap: str, source: str, sink: str, guarantee: str, batch: int, wait_ms: float
    ) -> None:
        self.bootstrap = bootstrap
        self.source = source
        self.sink = sink
        self.guarantee = guarantee
        self.batch = batch
        self.wait_s = wait_ms / 1000
        self.group = f"bench-raw-{uuid.uuid4().hex[:8]}"
        self.stop_event = threading.Event()

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        consumer = Consumer(
            consumer_config(self.bootstrap, self.group, client_id=self.group, **WORKER_CONSUMER)
        )
        transactional = self.guarantee == "exactly_once"
        if transactional:
            producer = Producer(
                producer_config(
                    self.bootstrap,
                    transactional_id=self.group,
                    client_id=self.group,
                    **{"transaction.timeout.ms": TRANSACTION_TIMEOUT_MS},
                )
            )
            producer.init_transactions(CALL_TIMEOUT_S)
        else:
            producer = Producer(producer_config(self.bootstrap, client_id=self.group))
        consumer.subscribe([self.source])
        try:
            while not self.stop_event.is_set():
                messages = [
                    m for m in consumer.consume(self.batch, self.wait_s) if m.error() is None
                ]
                if not messages:
                    continue
                offsets = _next_offsets(messages)
                if transactional:
                    producer.begin_transaction()
                    for m in messages:
                        _produce(producer, self.sink, m.key(), m.value())
                    producer.send_offsets_to_transaction(
                        offsets, consumer.consumer_group_metadata(), CALL_TIMEOUT_S
                    )
                    producer.commit_transaction(CALL_TIMEOUT_S)
                else:
                    for m in messages:
                        _produce(producer, self.sink, m.key(), m.value())
                    if producer.flush(CALL_TIMEOUT_S):
                        raise BenchmarkFailed("baseline: records left unsent")
                    consumer.commit(offsets=offsets, asynchronous=False)
        finally:
            producer.flush(CALL_TIMEOUT_S)
            consumer.close()


def raw_sink(spec: PipelineSpec, guarantee: str) -> str:
    return f"bench.{spec.name}.raw-{guarantee.replace('_', '-')}"


def drain_raw(
    bootstrap: str,
    spec: PipelineSpec,
    guarantee: str,
    n: int,
    timeout: float,
    batch: int,
    wait_ms: float,
) -> Drain:
    sink = raw_sink(spec, guarantee)
    ensure_topics(bootstrap, [TopicSpec(sink, spec.partitions)])
    loop = RawLoop(bootstrap, inputs_topic(spec.name), sink, guarantee, batch, wait_ms)
    failures: list[BaseException] = []
    drain, _ = _drain(
        bootstrap,
        sink,
        spec.partitions,
        n,
        timeout,
        start=lambda: _thread(loop.run, "bench-raw", failures),
        stop=loop.stop,
    )
    if failures:
        raise BenchmarkFailed(f"the baseline failed: {failures[0]!r}")
    return drain


# -- the backlog ---------------------------------------------------------------------------
def produce_requests(bootstrap: str, spec: PipelineSpec, n: int) -> float:
    """Fill the inputs topic with n requests; return the seconds it took (not measured)."""
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    data = rng.standard_normal((n, FLOATS), dtype=np.float32)
    # Larger producer batches than the engine's: filling the backlog is not what we time.
    bulk: dict[str, Any] = {"linger.ms": 20}
    producer = Producer(producer_config(bootstrap, client_id="bench-producer", **bulk))
    topic = inputs_topic(spec.name)
    for i in range(n):
        rid = uuid.uuid4().hex
        value = encode_request(spec.name, {"x": data[i : i + 1]}, id=rid).SerializeToString()
        _produce(producer, topic, rid.encode(), value)
        producer.poll(0)
    if producer.flush(60):
        raise BenchmarkFailed("could not produce the requests")
    return time.perf_counter() - started


# -- one measurement -----------------------------------------------------------------------
def _new_spec(
    args: argparse.Namespace, bootstrap: str, name: str, guarantee: str, created: list[str]
) -> PipelineSpec:
    """A fresh pipeline (fresh topics and consumer group); its topics are noted in
    ``created``."""
    spec = pipeline_spec(name, guarantee, args.partitions, args.batch, args.max_wait_ms)
    topics = derive_topics(spec)
    ensure_topics(bootstrap, topics)
    created += [t.name for t in topics]
    created += [raw_sink(spec, g) for g in GUARANTEES]
    return spec


def measure(
    args: argparse.Namespace, bootstrap: str, spec: PipelineSpec, repeat: int
) -> dict[str, Any]:
    """Fill the inputs topic, then drain it with the engine and with the raw loop; which
    goes first alternates between repeats so neither always meets the fresher broker."""
    produce_s = produce_requests(bootstrap, spec, args.requests)
    engine_first = repeat % 2 == 0
    label = f"{spec.guarantee}.{repeat + 1}"

    def engine() -> Drain:
        return drain_engine(bootstrap, spec, args.requests, args.timeout, args.profile, label)

    def raw() -> Drain:
        return drain_raw(
            bootstrap,
            spec,
            spec.guarantee,
            args.requests,
            args.timeout,
            args.batch,
            args.max_wait_ms,
        )

    if engine_first:
        e, r = engine(), raw()
    else:
        r, e = raw(), engine()
    print(
        f"{spec.guarantee} run {repeat + 1}/{args.repeat}: engine {e.rate:,.0f} rec/s, "
        f"raw {r.rate:,.0f} rec/s, ratio {e.rate / r.rate:.2f} "
        f"({'engine' if engine_first else 'raw'} first; produce {produce_s:.1f}s)",
        flush=True,
    )
    return {
        "repeat": repeat + 1,
        "first": "engine" if engine_first else "raw",
        "produce_s": produce_s,
        "engine": _as_dict(e),
        "raw": _as_dict(r),
        "ratio": e.rate / r.rate,
    }


def warm_up(args: argparse.Namespace, bootstrap: str, spec: PipelineSpec) -> None:
    """A fresh broker's JVM is cold: drain a small backlog once with each raw loop and the
    engine, unmeasured, so the first measured drain does not pay for JIT compilation."""
    produce_requests(bootstrap, spec, args.warmup)
    for guarantee in GUARANTEES:
        drain_raw(
            bootstrap, spec, guarantee, args.warmup, args.timeout, args.batch, args.max_wait_ms
        )
    drain_engine(bootstrap, spec, args.warmup, args.timeout, None, "warmup")


def summarize(guarantee: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats, per side; the ratio is the ratio of the medians."""

    def median(side: str, key: str) -> float:
        return statistics.median(float(r[side][key]) for r in runs)

    engine, raw = median("engine", "rate"), median("raw", "rate")
    engine_steady, raw_steady = median("engine", "steady_rate"), median("raw", "steady_rate")
    return {
        "guarantee": guarantee,
        "engine_rate": engine,
        "raw_rate": raw,
        "ratio": engine / raw,
        "engine_steady_rate": engine_steady,
        "raw_steady_rate": raw_steady,
        "steady_ratio": engine_steady / raw_steady,
        "engine_first_result_s": median("engine", "first_result_s"),
        "raw_first_result_s": median("raw", "first_result_s"),
        "runs": runs,
    }


# -- reporting -----------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'guarantee':<14} {'engine rec/s':>12} {'raw rec/s':>10} {'ratio':>6}"
        f"   {'engine steady':>13} {'raw steady':>10} {'ratio':>6}"
        f"   {'engine 1st':>10} {'raw 1st':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['guarantee']:<14} {r['engine_rate']:>12,.0f} {r['raw_rate']:>10,.0f}"
            f" {r['ratio']:>6.2f}   {r['engine_steady_rate']:>13,.0f}"
            f" {r['raw_steady_rate']:>10,.0f} {r['steady_ratio']:>6.2f}"
            f"   {r['engine_first_result_s']:>9.2f}s {r['raw_first_result_s']:>7.2f}s"
        )
    return "\n".join(lines)


def _as_dict(drain: Drain) -> dict[str, Any]:
    return {**asdict(drain), "rate": drain.rate}


def _delete_topics(bootstrap: str, names: list[str]) -> None:
    existing = list_topics(bootstrap)
    names = [n for n in names if n in existing]
    if not names:
        return
    futures = AdminClient(admin_config(bootstrap)).delete_topics(names, request_timeout=30)
    for future in futures.values():
        try:
            future.result(30)
        except Exception as exc:
            log.warning("could not delete a benchmark topic: %s", exc)


# -- main ----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per drain")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of every topic")
    parser.add_argument("--batch", type=int, default=256, help="batch max_size (both sides)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batch max_wait_ms")
    parser.add_argument(
        "--guarantee", choices=[*GUARANTEES, "both"], default="both", help="which to measure"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per guarantee (median)")
    parser.add_argument(
        "--warmup", type=int, default=5_000, help="requests drained unmeasured first (0: none)"
    )
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per drain")
    parser.add_argument(
        "--profile", type=Path, help="write cProfile stats of the engine's threads here"
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.repeat < 1 or args.warmup < 0:
        parser.error("--requests and --repeat must be at least 1, --warmup at least 0")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = shlex.join(sys.orig_argv)
    print(f"command: {command}", flush=True)
    guarantees = GUARANTEES if args.guarantee == "both" else (args.guarantee,)
    run_id = uuid.uuid4().hex[:6]
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with kafka_bootstrap(args.bootstrap) as bootstrap:
        created: list[str] = []
        try:
            if args.warmup:
                name = f"bench-warmup-{run_id}"
                warm_up(args, bootstrap, _new_spec(args, bootstrap, name, "at_least_once", created))
            for guarantee in guarantees:
                runs = []
                for repeat in range(args.repeat):
                    name = f"bench-{guarantee.replace('_', '-')}-{run_id}-{repeat + 1}"
                    spec = _new_spec(args, bootstrap, name, guarantee, created)
                    runs.append(measure(args, bootstrap, spec, repeat))
                rows.append(summarize(guarantee, runs))
        finally:
            if args.bootstrap and created:
                _delete_topics(bootstrap, created)
    print()
    print(
        f"{args.requests} requests of {FLOATS * 4} B, {args.partitions} partitions, batch "
        f"max_size {args.batch} / max_wait_ms {args.max_wait_ms:g}; medians of {args.repeat} "
        f"run(s); total {time.perf_counter() - started:.0f}s"
    )
    print(table(rows))
    if args.json is not None:
        result = {
            "benchmark": "engine_throughput",
            "command": command,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "params": {
                "requests": args.requests,
                "request_bytes": FLOATS * 4,
                "partitions": args.partitions,
                "batch_max_size": args.batch,
                "batch_max_wait_ms": args.max_wait_ms,
                "repeat": args.repeat,
                "warmup": args.warmup,
            },
            "results": rows,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchmarkFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
