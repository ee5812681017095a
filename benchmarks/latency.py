"""Where a request's time goes: the medical-records pipeline against the REST chain of the
same models, at low load, interleaved in one run.

1. The example's models are trained unless present; specs are written as the decoupling
   benchmark writes them (``_medrec_specs.py``; no fault is ever switched on here).
2. The REST chain (a model server per model and an orchestrator, ``_chain.py``) and the
   pipeline (a worker process per step and one for the output join, the gateway) start
   and are warmed up with notes at a modest rate. ``--fuse``: one worker runs every step,
   fused (``run --fuse``: one consumer group, one transaction per commit).
3. ``--requests`` notes one at a time, alternating between the two (the same note to
   both, in turn), then ``--rate`` notes/s open loop to each for ``--duration-s``, the
   pipeline's sends half a period after the chain's.
4. The floor: the same models called in this process in the DAG's order (no HTTP, no
   Kafka) on the same notes; per model its median time, and the critical path's model
   time (normalize, the slowest classifier, icd10, then the slower of hcc and gate plus
   its branch).
5. For the pipeline, each request along its critical path from record timestamps
   (``_hops.dag_hops``): the gateway's produce, each step's time from the record that
   made it ready to the record it wrote (its source's commit, its fetch, batch wait and
   model), the reply's way back. Overhead = latency - floor, and per Kafka hop.

    .venv/bin/python benchmarks/latency.py [--requests 100] [--rate 4] [--duration-s 30]
        [--warm-s 30] [--fuse] [--bootstrap HOST:PORT] [--json PATH] [--example DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import shlex
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import numpy as np
from _architectures import Pipeline, RestChain
from _broker import kafka_bootstrap
from _chain import Chain
from _drain import run_main
from _hops import dag_hops
from _loadgen import percentile
from _machine import machine
from _openloop import Outcome, note_body, open_loop
from _scenarios import Config, Runner
from _serving import Children
from prometheus_client.parser import text_string_to_metric_families

from streamdag.broker import free_port
from streamdag.demo.example import EXAMPLE_DIR, MedicalRecords
from streamdag.demo.processes import Workers
from streamdag.pipeline import compile_plan, load_spec
from streamdag.runtimes import Model, create_model

Arch = RestChain | Pipeline
DEADLINE_S = 30.0


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=100, help="one at a time, to each")
    p.add_argument("--rate", type=float, default=4.0, help="notes/s open loop, to each")
    p.add_argument("--duration-s", type=float, default=30.0, help="of the open-loop part")
    p.add_argument("--warm-s", type=float, default=30.0, help="warm-up notes at 3/s, each")
    p.add_argument("--bootstrap", help="a running Kafka (default: a local broker for the run)")
    p.add_argument("--json", type=Path, help="write the results to this file")
    p.add_argument("--example", type=Path, default=EXAMPLE_DIR, help="the medical_records folder")
    p.add_argument("--fuse", action="store_true", help="run the pipeline's steps fused")
    p.add_argument(
        "--agree-notes",
        type=int,
        default=1000,
        help="notes sent to both at the end (open loop, --agree-rate) whose answers are compared",
    )
    p.add_argument("--agree-rate", type=float, default=25.0, help="notes/s of that part")
    return p.parse_args(argv)


class InProcess(Chain):
    """The chain's DAG with each model called in this process: the models' own time."""

    def __init__(self, models: dict[str, Model]) -> None:
        self.models = models
        self.times: dict[str, float] = {}

    async def call(self, model: str, arrays: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        out = self.models[model].predict(arrays)
        self.times[model] = (time.perf_counter() - started) * 1000
        return out


async def floor(spec_path: Path, texts: list[str]) -> dict[str, Any]:
    spec = load_spec(spec_path)
    models = {name: create_model(name, m, spec.base_dir) for name, m in spec.models.items()}
    for model in models.values():
        model.load()
    chain = InProcess(models)
    per_model: dict[str, list[float]] = {name: [] for name in models}
    paths = []
    for i, text in enumerate([*texts[:20], *texts]):  # the first 20 warm the models up
        chain.times = {}
        await chain.note(np.array([text.encode()], dtype=object))
        if i < 20:
            continue
        t = chain.times
        for name, ms in t.items():
            per_model[name].append(ms)
        branch = t.get("accept", 0.0) + t.get("review", 0.0)  # one of them ran
        classify = max(t["sections"], t["entities"], t["assertion"])
        paths.append(t["normalize"] + classify + t["icd10"] + max(t["hcc"], t["gate"] + branch))
    return {
        "model_median_ms": {m: statistics.median(v) for m, v in per_model.items() if v},
        "critical_path_median_ms": statistics.median(paths),
    }


class MeteredWorkers(Workers):
    """The pipeline's workers, each serving its metrics on a port of its own; ``fuse``:
    one worker runs every step, fused (``run --fuse``)."""

    def __init__(self, workers: Workers, *, fuse: bool) -> None:
        groups = [[s for g in workers.groups for s in g]] if fuse else workers.groups
        super().__init__(workers.spec, workers.cluster, groups, workers.log_dir)
        self.fuse = fuse
        self.ports = {",".join(g): free_port() for g in self.groups}

    def command(self, steps: Sequence[str]) -> list[str]:
        port = ["--metrics-port", str(self.ports[",".join(steps)])]
        return [*super().command(steps), *port, *(["--fuse"] if self.fuse else [])]

    def sums(self) -> dict[tuple[str, str], float]:
        """(series, step) -> value of the commit and model histograms' sums and counts."""
        out: dict[tuple[str, str], float] = {}
        for port in self.ports.values():
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            for family in text_string_to_metric_families(text):
                if family.name not in ("streamdag_commit_seconds", "streamdag_model_seconds"):
                    continue
                for sample in family.samples:
                    if sample.name.endswith(("_sum", "_count")):
                        out[(sample.name, sample.labels["step"])] = sample.value
        return out


def per_step_ms(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], what: str
) -> dict[str, float]:
    """Mean milliseconds per ``what`` (commit, model) of each step between two readings."""
    out = {}
    for (name, step), total in after.items():
        if name != f"streamdag_{what}_seconds_sum":
            continue
        n = after.get((f"streamdag_{what}_seconds_count", step), 0) - before.get(
            (f"streamdag_{what}_seconds_count", step), 0
        )
        if n > 0:
            out[step] = (total - before.get((name, step), 0.0)) * 1000 / n
    return out


async def one_at_a_time(
    archs: list[Arch], texts: list[str], run_id: str
) -> dict[str, list[Outcome]]:
    """Each note to each architecture in turn, the next only once the last was answered;
    which goes first alternates."""
    outcomes: dict[str, list[Outcome]] = {a.name: [] for a in archs}
    async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
        for i, text in enumerate(texts):
            for arch in archs if i % 2 == 0 else archs[::-1]:
                rid = f"one-{run_id}-{arch.name[:4]}-{i}"
                outcome = Outcome(i, rid, i, time.time())
                started = time.perf_counter()
                response = await client.post(
                    arch.url,
                    content=note_body(rid, text),
                    headers={"content-type": "application/json"},
                )
                outcome.latency_s = time.perf_counter() - started
                outcome.status = "result" if response.status_code == 200 else "error"
                outcomes[arch.name].append(outcome)
    return outcomes


async def open_loop_both(
    chain: RestChain, pipeline: Pipeline, texts: list[str], rate: float, prefix: str
) -> dict[str, tuple[list[Outcome], float]]:
    async def run(arch: Arch, delay_s: float) -> tuple[list[Outcome], float]:
        await asyncio.sleep(delay_s)
        docs = [(f"{prefix}-{arch.name[:4]}-{i}", t) for i, t in enumerate(texts)]
        return await open_loop(arch.url, docs, rate=rate, deadline_s=DEADLINE_S)

    ran = await asyncio.gather(run(chain, 0.0), run(pipeline, 0.5 / rate))
    return {chain.name: ran[0], pipeline.name: ran[1]}


def agreement(chain: list[Outcome], pipeline: list[Outcome]) -> dict[str, Any]:
    """How many notes both answered, and alike (every output tensor); and a digest of each
    of the pipeline's answers, in note order, to compare two runs (say fused and not)."""
    a = {o.doc: o.result for o in chain if o.result is not None}
    b = {o.doc: o.result for o in pipeline if o.result is not None}
    both = sorted(set(a) & set(b))
    digest = hashlib.sha256()
    for doc in sorted(b):
        digest.update(json.dumps([doc, b[doc]], sort_keys=True).encode())
    return {
        "notes": len(pipeline),
        "pipeline_answered": len(b),
        "chain_answered": len(a),
        "same_as_chain": sum(a[d] == b[d] for d in both),
        "pipeline_answers_sha256": digest.hexdigest(),
    }


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    ms = [o.latency_s * 1000 for o in outcomes if o.status == "result" and o.latency_s]
    return {
        "requests": len(outcomes),
        "answered": len(ms),
        "p50_ms": percentile(ms, 50) if ms else math.nan,
        "p95_ms": percentile(ms, 95) if ms else math.nan,
        "p99_ms": percentile(ms, 99) if ms else math.nan,
    }


def calls(outcomes: list[Outcome], started_wall: float | None) -> list[tuple[str, float, float]]:
    """(request id, wall-clock send, wall-clock receive) of each answered request."""
    out = []
    for o in outcomes:
        if o.status != "result" or o.latency_s is None:
            continue
        sent = o.sent_s if started_wall is None else started_wall + o.sent_s
        out.append((o.rid, sent, sent + o.latency_s))
    return out


def report_lines(phase: str, result: dict[str, Any]) -> list[str]:
    lines = [f"\n{phase}"]
    lines.append(f"{'':<22}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, s in result["latency"].items():
        lines.append(
            f"{name:<22}{s['answered']:>5}{s['p50_ms']:>9.1f}{s['p95_ms']:>9.1f}{s['p99_ms']:>9.1f}"
        )
    ratio = result["pipeline_over_chain"]
    lines.append(f"pipeline / chain: p50 {ratio['p50']:.2f}, p99 {ratio['p99']:.2f}")
    hops = result["hops"]
    produce, reply = hops["gateway_produce_ms"]["median_ms"], hops["reply_read_ms"]["median_ms"]
    lines.append(
        f"pipeline breakdown (median ms): gateway produce {produce:.1f}, reply read {reply:.1f}"
    )
    for name, node in hops["nodes"].items():
        lines.append(
            f"  {name:<12} {node['median_ms']:6.1f} (p99 {node['p99_ms']:6.1f})"
            f"  on the critical path {node['on_critical_path']}/{hops['requests']}"
            f"  model {result['model_ms'].get(name, 0.0):5.1f}"
            f" (in the pipeline {result['pipeline_model_ms'].get(name, 0.0):5.1f})"
            f"  commit {result['commit_ms'].get(name, 0.0):5.1f}"
        )
    for name, ms in result["commit_ms"].items():
        if name not in hops["nodes"]:
            lines.append(f"  fused stage {name}: commit {ms:.1f} ms")
    o = result["overhead"]
    lines.append(
        f"overhead: {o['total_ms']:.1f} ms over a floor of {o['floor_ms']:.1f} ms"
        f" = {o['per_hop_ms']:.1f} ms per Kafka hop ({o['hops']} on the critical path)"
    )
    return lines


def analyse(
    bootstrap: str,
    spec_path: Path,
    outcomes: dict[str, list[Outcome]],
    started: dict[str, float | None],
    floor_ms: dict[str, Any],
    sums: tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]],
    *,
    fused: bool,
) -> dict[str, Any]:
    plan = compile_plan(load_spec(spec_path))
    latency = {name: summary(o) for name, o in outcomes.items()}
    chain, pipe = latency[RestChain.name], latency[Pipeline.name]
    hops = dag_hops(bootstrap, plan, calls(outcomes[Pipeline.name], started[Pipeline.name]))
    # A step's model time is its model's; the output join runs none.
    model_ms = {
        name: floor_ms["model_median_ms"].get(node.model or "", 0.0)
        for name, node in plan.nodes.items()
    }
    path_len = statistics.median(len(p) for p in hops["critical_paths"])
    total = pipe["p50_ms"] - floor_ms["critical_path_median_ms"]
    # Unfused: the inputs topic to the first step, then each step's output. Fused: the
    # inputs topic to the stage, and the stage's outputs to the gateway.
    n_hops = 2 if fused else int(path_len) + 1
    return {
        "latency": latency,
        "pipeline_over_chain": {
            "p50": pipe["p50_ms"] / chain["p50_ms"],
            "p99": pipe["p99_ms"] / chain["p99_ms"],
        },
        "hops": {k: v for k, v in hops.items() if k != "critical_paths"},
        "critical_paths": hops["critical_paths"],
        "model_ms": model_ms,
        # Means over the phase, from the workers' histograms.
        "pipeline_model_ms": per_step_ms(*sums, "model"),
        "commit_ms": per_step_ms(*sums, "commit"),
        "overhead": {
            "floor_ms": floor_ms["critical_path_median_ms"],
            "total_ms": total,
            "hops": n_hops,
            "per_hop_ms": total / n_hops,
        },
    }


async def measure(args: argparse.Namespace, runner: Runner, bootstrap: str) -> dict[str, Any]:
    children = runner.children
    chain = RestChain(children, runner.specs, call_timeout_s=10.0)
    pipeline = Pipeline(children, runner.specs, bootstrap, runner.work / "workers")
    with contextlib.ExitStack() as stack:
        stack.callback(chain.stop)
        stack.callback(pipeline.stop)
        runner.say("starting the REST chain and the pipeline ...")
        metered = pipeline.workers = MeteredWorkers(pipeline.workers, fuse=args.fuse)
        chain.launch()
        pipeline.launch()
        chain.ready()
        pipeline.ready()
        for arch in (chain, pipeline):
            await runner.warm_up(arch)
        texts = runner.texts(max(args.requests, math.ceil(args.rate * args.duration_s)), 23)
        runner.say(f"{args.requests} notes one at a time to each, in turn ...")
        sums = [metered.sums()]
        one = await one_at_a_time([chain, pipeline], texts[: args.requests], runner.run_id)
        sums.append(metered.sums())
        runner.say(f"{args.rate} notes/s to each for {args.duration_s} s ...")
        n = math.ceil(args.rate * args.duration_s)
        opened = await open_loop_both(
            chain, pipeline, texts[:n], args.rate, f"open-{runner.run_id}"
        )
        sums.append(metered.sums())
        load_avg = os.getloadavg()[0]
        agreed = None
        if args.agree_notes:
            runner.say(f"{args.agree_notes} notes to each at {args.agree_rate}/s, answers compared")
            notes = runner.texts(args.agree_notes, 29)
            both = await open_loop_both(
                chain, pipeline, notes, args.agree_rate, f"agree-{runner.run_id}"
            )
            agreed = agreement(both[chain.name][0], both[pipeline.name][0])
    runner.say("the floor: the same models in this process ...")
    floor_ms = await floor(runner.example.root / "pipeline.yaml", texts[: args.requests])
    return {
        "floor": floor_ms,
        "one_at_a_time": analyse(
            bootstrap,
            runner.specs.pipeline,
            one,
            dict.fromkeys(one, None),
            floor_ms,
            (sums[0], sums[1]),
            fused=args.fuse,
        ),
        f"open_loop_{args.rate:g}_per_s": analyse(
            bootstrap,
            runner.specs.pipeline,
            {name: o for name, (o, _) in opened.items()},
            {name: t for name, (_, t) in opened.items()},
            floor_ms,
            (sums[1], sums[2]),
            fused=args.fuse,
        ),
        "load_avg_1m_end": round(load_avg, 2),
        "agreement": agreed,
    }


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)  # unwinds through every finally: each process started is stopped


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse(argv)
    example = MedicalRecords(args.example)
    models = example.ensure_models()
    print(f"models: {'trained' if models.trained else 'up to date'} in {example.models_dir}")
    run_id = uuid.uuid4().hex[:8]
    started = time.time()
    load_before = os.getloadavg()[0]
    cfg = Config(
        duration_s=args.duration_s,
        deadline_s=DEADLINE_S,
        restart_after_s=0.0,
        slow_for_s=0.0,
        window_s=1.0,
        capacity_s=0.0,
        warm_s=args.warm_s,
        settle_s=0.0,
        scenarios=(),
    )
    with (
        tempfile.TemporaryDirectory(prefix="streamdag-latency-") as tmp,
        Children(Path(tmp)) as children,
        kafka_bootstrap(args.bootstrap) as bootstrap,
    ):
        runner = Runner(example, Path(tmp), run_id, cfg, children)
        results = asyncio.run(measure(args, runner, bootstrap))
    report: dict[str, Any] = {
        "benchmark": "latency",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", "benchmarks/latency.py", *argv]),
        "seconds": round(time.time() - started, 1),
        "load_avg_1m_before": round(load_before, 2),
        "machine": machine(),
        **results,
    }
    floor_ms = results["floor"]
    print(
        "\nfloor (models in one process, median ms): "
        + ", ".join(f"{m} {v:.1f}" for m, v in floor_ms["model_median_ms"].items())
        + f"; critical path {floor_ms['critical_path_median_ms']:.1f}"
    )
    for phase in ("one_at_a_time", f"open_loop_{args.rate:g}_per_s"):
        for line in report_lines(phase, results[phase]):
            print(line)
    if results["agreement"]:
        a = results["agreement"]
        print(
            f"\nanswers: {a['pipeline_answered']} of {a['notes']} notes answered by the pipeline,"
            f" {a['same_as_chain']} the same as the chain's; digest {a['pipeline_answers_sha256']}"
        )
    print(f"\n{report['seconds']} s in all; load average (1 min) {load_before:.2f} before")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
