"""Engine throughput: how fast one pipeline step drains a backlog, against a raw Kafka loop.

For each delivery guarantee, ``--repeat`` times (medians are reported):

1. N requests (one 1 KB FP32 tensor each) are produced ahead of time to the inputs topic
   of a fresh one-step pipeline whose model costs next to nothing (``y = 2 * x``). Not
   timed.
2. The engine (``PipelineRunner``) drains them. Timed from runner start until all N
   results are on the pipeline's outputs topic, read with ``read_committed``.
3. The baseline drains the very same records (same topic, its own consumer group) with a
   raw confluent-kafka consume -> produce loop that gives the same guarantee with the same
   batch size and the same client configs, copying key and value bytes to a topic of its
   own: no protobuf, no numpy, no headers. Timed the same way. It is meant as the ceiling
   for any engine; see docs/benchmarks.md for where, with exactly_once, it is not.

Which of the two drains first alternates between repeats; a small unmeasured drain warms
the broker's JVM first (``--warmup``). Without ``--bootstrap`` a broker is started on a
free port in a temporary folder and stopped at the end whatever happens.

    .venv/bin/python benchmarks/engine_throughput.py [--requests 20000] [--partitions 6]
        [--batch 256] [--max-wait-ms 5] [--guarantee both] [--repeat 3] [--warmup 5000]
        [--bootstrap HOST:PORT] [--json results.json] [--profile DIR]
        [--raw-config KEY=VALUE ...] [--python-floor]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import logging
import os
import shlex
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from _broker import delete_topics, kafka_bootstrap
from _drain import BenchmarkFailed, Drain, run_main, timed_drain
from _machine import machine
from _rawloop import PythonFloor, RawLoop, produce
from confluent_kafka import Producer

from streamdag.engine import PipelineRunner, StepWorker
from streamdag.kafka import TopicSpec, ensure_topics, producer_config
from streamdag.pipeline import (
    PipelineSpec,
    compile_plan,
    derive_topics,
    inputs_topic,
    outputs_topic,
    parse_spec,
)
from streamdag.protocol import decode_response, encode_request, response_from_bytes

HERE = Path(__file__).resolve().parent
GUARANTEES = ("exactly_once", "at_least_once")
FLOATS = 256  # 1 KB of FP32 per request


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

    def process_profiled(self: StepWorker, *args: Any) -> Any:
        return model_prof.runcall(process, self, *args)

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
    runner = PipelineRunner(compile_plan(spec), bootstrap)
    with profiled(profile, label):
        drain, sample = timed_drain(
            "engine",
            runner.run,
            runner.stop,
            bootstrap=bootstrap,
            topic=outputs_topic(spec.name),
            partitions=spec.partitions,
            n=n,
            timeout=timeout,
            in_process=profile is not None,
        )
    if sample is None:
        raise BenchmarkFailed("no result to check")
    y = decode_response(response_from_bytes(sample))["y"]
    if y.dtype != np.float32 or y.shape != (1, FLOATS):
        raise BenchmarkFailed(f"unexpected result: {y.dtype} {y.shape}")
    return drain


# -- the baseline --------------------------------------------------------------------------
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
    producer_extra: dict[str, Any],
    in_process: bool = False,
) -> Drain:
    """``in_process``: in a thread, as the engine runs when profiled (a child forked from a
    process whose Kafka clients ran in threads can hang on a lock held at the fork)."""
    sink = raw_sink(spec, guarantee)
    ensure_topics(bootstrap, [TopicSpec(sink, spec.partitions)])
    loop = RawLoop(
        bootstrap, inputs_topic(spec.name), sink, guarantee, batch, wait_ms, producer_extra
    )
    return _drain_loop("baseline", loop, bootstrap, sink, spec, n, timeout, in_process)


def _drain_loop(
    what: str,
    loop: RawLoop,
    bootstrap: str,
    topic: str,
    spec: PipelineSpec,
    n: int,
    timeout: float,
    in_process: bool = False,
) -> Drain:
    drain, _ = timed_drain(
        what,
        loop.run,
        loop.stop,
        bootstrap=bootstrap,
        topic=topic,
        partitions=spec.partitions,
        n=n,
        timeout=timeout,
        in_process=in_process,
    )
    return drain


def floor_sinks(spec: PipelineSpec) -> tuple[str, str]:
    return f"bench.{spec.name}.floor-step", f"bench.{spec.name}.floor-final"


def drain_floor(
    bootstrap: str,
    spec: PipelineSpec,
    n: int,
    timeout: float,
    batch: int,
    wait_ms: float,
    in_process: bool = False,
) -> Drain:
    """The same records drained by ``PythonFloor`` (at_least_once): what any Python
    engine must do per request, without the engine's structure around it. ``in_process``
    as for ``drain_raw``."""
    step_sink, final_sink = floor_sinks(spec)
    ensure_topics(bootstrap, [TopicSpec(t, spec.partitions) for t in (step_sink, final_sink)])
    loop = PythonFloor(
        bootstrap,
        inputs_topic(spec.name),
        step_sink,
        "at_least_once",
        batch,
        wait_ms,
        final_sink=final_sink,
        pipeline=spec.name,
    )
    return _drain_loop("python floor", loop, bootstrap, final_sink, spec, n, timeout, in_process)


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
        produce(producer, topic, rid.encode(), value)
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
    created += floor_sinks(spec)
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
            args.raw_config,
            in_process=args.profile is not None,
        )

    if engine_first:
        e, r = engine(), raw()
    else:
        r, e = raw(), engine()
    floor = None
    if args.python_floor and spec.guarantee == "at_least_once":
        floor = drain_floor(
            bootstrap,
            spec,
            args.requests,
            args.timeout,
            args.batch,
            args.max_wait_ms,
            in_process=args.profile is not None,
        )
    print(
        f"{spec.guarantee} run {repeat + 1}/{args.repeat}: engine {e.rate:,.0f} rec/s, "
        f"raw {r.rate:,.0f} rec/s, ratio {e.rate / r.rate:.2f} "
        + (f"python floor {floor.rate:,.0f} rec/s ({floor.rate / r.rate:.2f}) " if floor else "")
        + f"({'engine' if engine_first else 'raw'} first; produce {produce_s:.1f}s)",
        flush=True,
    )
    return {
        "repeat": repeat + 1,
        "first": "engine" if engine_first else "raw",
        "produce_s": produce_s,
        "engine": _as_dict(e),
        "raw": _as_dict(r),
        "ratio": e.rate / r.rate,
        **({"floor": _as_dict(floor), "floor_ratio": floor.rate / r.rate} if floor else {}),
    }


def warm_up(args: argparse.Namespace, bootstrap: str, spec: PipelineSpec) -> None:
    """A fresh broker's JVM is cold: drain a small backlog once with each raw loop and the
    engine, unmeasured, so the first measured drain does not pay for JIT compilation."""
    produce_requests(bootstrap, spec, args.warmup)
    for guarantee in GUARANTEES:
        drain_raw(
            bootstrap,
            spec,
            guarantee,
            args.warmup,
            args.timeout,
            args.batch,
            args.max_wait_ms,
            args.raw_config,
        )
    drain_engine(bootstrap, spec, args.warmup, args.timeout, None, "warmup")


def summarize(guarantee: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats, per side; the ratio is the ratio of the medians."""

    def median(side: str, key: str) -> float:
        return statistics.median(float(r[side][key]) for r in runs)

    engine, raw = median("engine", "rate"), median("raw", "rate")
    engine_steady, raw_steady = median("engine", "steady_rate"), median("raw", "steady_rate")
    summary = {
        "guarantee": guarantee,
        "engine_rate": engine,
        "raw_rate": raw,
        "ratio": engine / raw,
        "engine_steady_rate": engine_steady,
        "raw_steady_rate": raw_steady,
        "steady_ratio": engine_steady / raw_steady,
        "engine_first_result_s": median("engine", "first_result_s"),
        "raw_first_result_s": median("raw", "first_result_s"),
        "engine_cpu_us": median("engine", "cpu_us_per_record"),
        "raw_cpu_us": median("raw", "cpu_us_per_record"),
        "runs": runs,
    }
    if all("floor" in r for r in runs):
        floor = median("floor", "rate")
        summary |= {
            "floor_rate": floor,
            "floor_ratio": floor / raw,
            "floor_steady_rate": median("floor", "steady_rate"),
            "floor_cpu_us": median("floor", "cpu_us_per_record"),
        }
    return summary


# -- reporting -----------------------------------------------------------------------------
def table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'guarantee':<14} {'engine rec/s':>12} {'raw rec/s':>10} {'ratio':>6}"
        f"   {'engine steady':>13} {'raw steady':>10} {'ratio':>6}"
        f"   {'engine 1st':>10} {'raw 1st':>8}"
        f"   {'engine CPU':>10} {'raw CPU':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['guarantee']:<14} {r['engine_rate']:>12,.0f} {r['raw_rate']:>10,.0f}"
            f" {r['ratio']:>6.2f}   {r['engine_steady_rate']:>13,.0f}"
            f" {r['raw_steady_rate']:>10,.0f} {r['steady_ratio']:>6.2f}"
            f"   {r['engine_first_result_s']:>9.2f}s {r['raw_first_result_s']:>7.2f}s"
            f"   {r['engine_cpu_us']:>7.1f} us {r['raw_cpu_us']:>5.1f} us"
        )
    floors = [r for r in rows if "floor_rate" in r]
    if floors:
        lines.append("")
        lines.append(f"{'python floor':<14} {'rec/s':>12} {'ratio':>10} {'steady':>10} {'CPU':>10}")
        for r in floors:
            lines.append(
                f"{r['guarantee']:<14} {r['floor_rate']:>12,.0f} {r['floor_ratio']:>10.2f}"
                f" {r['floor_steady_rate']:>10,.0f} {r['floor_cpu_us']:>7.1f} us"
            )
    return "\n".join(lines)


def _as_dict(drain: Drain) -> dict[str, Any]:
    return {**asdict(drain), "rate": drain.rate, "cpu_us_per_record": drain.cpu_us_per_record}


# -- main ----------------------------------------------------------------------------------
def _config_item(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


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
        "--profile",
        type=Path,
        help="write cProfile stats of the engine's worker and model threads to this folder "
        "(CPython 3.11: later versions allow one profiler per process)",
    )
    parser.add_argument(
        "--python-floor",
        action="store_true",
        help="at_least_once: also drain with the minimal Python loop of _rawloop.PythonFloor",
    )
    parser.add_argument(
        "--raw-config",
        type=_config_item,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka setting for the baseline's producer only (repeatable); "
        "by default both sides use the engine's configs unchanged",
    )
    args = parser.parse_args(argv)
    args.raw_config = dict(args.raw_config)
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
    # Other work on the machine skews every figure; the load average shows if there was any.
    load_before = os.getloadavg()
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
                delete_topics(bootstrap, created)
    load_after = os.getloadavg()
    print()
    print(
        f"{args.requests} requests of {FLOATS * 4} B, {args.partitions} partitions, batch "
        f"max_size {args.batch} / max_wait_ms {args.max_wait_ms:g}; medians of {args.repeat} "
        f"run(s); total {time.perf_counter() - started:.0f}s; load average (1 min) "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    if args.raw_config:
        print(f"baseline producer also given: {args.raw_config}")
    print(table(rows))
    if args.json is not None:
        result = {
            "benchmark": "engine_throughput",
            "command": command,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": load_after},
            "params": {
                "requests": args.requests,
                "request_bytes": FLOATS * 4,
                "partitions": args.partitions,
                "batch_max_size": args.batch,
                "batch_max_wait_ms": args.max_wait_ms,
                "repeat": args.repeat,
                "warmup": args.warmup,
                "raw_config": args.raw_config,
            },
            "results": rows,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
