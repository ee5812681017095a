"""gRPC vs REST: one model behind `streamdag serve`, called over REST JSON, gRPC typed
contents and gRPC raw contents; and pipeline request-reply latency through the REST door.

1. `streamdag serve` runs in a child process (REST and gRPC in one process, its own GIL)
   on free 127.0.0.1 ports, with a broker for its Kafka gateway (started on a free port
   unless ``--bootstrap`` is given). The model is ``y = 2 * x`` on an FP32 tensor of
   shape ``[1, n]``, served with ``batch: {max_size: 64, max_wait_ms: 0}``.
2. For each payload (1 KB, 100 KB, 1 MB, 8 MB), concurrency (1, 8, 32) and transport, this
   process runs asyncio callers in a closed loop (httpx.AsyncClient with a pool of up to
   32 connections; one grpc.aio channel) until the payload's request count or the time
   budget is reached. Requests are built once per payload (their client-side encoding
   time is reported apart); each call sends, waits and decodes the answer into numpy.
3. `streamdag run` starts the workers of two 3-step linear pipelines (python steps,
   ``y = 2 * x``), one ``at_least_once``, one ``exactly_once``, in child processes; after
   a warm-up (1,000 requests, 8 at a time), requests go one at a time through
   ``/v2/pipelines/<p>/infer`` (1 KB) and their latency is split into hops with the
   records' Kafka timestamps (``_hops.py``).

    .venv/bin/python benchmarks/grpc_vs_rest.py [--bootstrap HOST:PORT] [--json PATH]
        [--plot PATH | --no-plot] [--payloads 1KB,100KB,1MB,8MB] [--concurrency 1,8,32]
        [--budget-s 1.5] [--part both|transports|pipeline] [--pipeline-requests 150]
        [--pipeline-warmup 1000] [--step-max-wait-ms MS] [--fuse] [--patch-tcp-nodelay]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shlex
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from _broker import kafka_bootstrap
from _drain import BenchmarkFailed, run_main
from _hops import hops
from _loadgen import TRANSPORTS, GrpcClient, Load, Prepared, RestClient, closed_loop
from _machine import machine
from _report import plot, print_report
from _serving import (
    SERVED_MODEL,
    STEPS,
    TCP_NODELAY_PATCH,
    Children,
    Specs,
    create_pipeline_topics,
    delete_pipeline_topics,
    wait_ready,
    write_specs,
)

from streamdag.broker import free_port

HERE = Path(__file__).resolve().parent
DEFAULT_PLOT = HERE.parent / "docs" / "img" / "grpc_vs_rest.png"


@dataclass(frozen=True)
class Payload:
    label: str
    floats: int  # FP32 elements: the tensor is [1, floats]
    max_requests: int  # per (transport, concurrency) cell; the time budget may end it first
    warmup: int  # unmeasured requests per transport, sent at once (opens connections)


PAYLOADS = {
    p.label.replace(" ", ""): p
    for p in (
        Payload("1 KB", 256, 3000, 32),
        Payload("100 KB", 25_600, 1000, 32),
        Payload("1 MB", 262_144, 200, 4),
        Payload("8 MB", 2_097_152, 40, 1),
    )
}


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)  # unwinds through the finally blocks: children, then the broker


# -- transports ----------------------------------------------------------------------------
async def measure_transports(
    args: argparse.Namespace, http_port: int, grpc_port: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rest = RestClient(f"http://127.0.0.1:{http_port}", max(args.concurrency))
    grpc_client = GrpcClient(f"127.0.0.1:{grpc_port}")
    rng = np.random.default_rng(0)
    cells: list[dict[str, Any]] = []
    encodings: list[dict[str, Any]] = []
    try:
        for payload in args.payloads:
            x = rng.standard_normal((1, payload.floats), dtype=np.float32)
            prepared: dict[str, Prepared] = {
                "rest-json": rest.model(SERVED_MODEL, x),
                "grpc-typed": grpc_client.model(SERVED_MODEL, x, raw=False),
                "grpc-raw": grpc_client.model(SERVED_MODEL, x, raw=True),
            }
            for transport, p in prepared.items():
                encodings.append(
                    {
                        "payload": payload.label,
                        "transport": transport,
                        "request_bytes": p.request_bytes,
                        "encode_ms": p.encode_s * 1000,
                    }
                )
                await _warm_up(transport, p, x, payload.warmup)
            for concurrency in args.concurrency:
                for transport in TRANSPORTS:
                    load = await closed_loop(
                        prepared[transport].call,
                        concurrency=concurrency,
                        max_requests=payload.max_requests,
                        budget_s=args.budget_s,
                    )
                    cell = {
                        "transport": transport,
                        "payload": payload.label,
                        "floats": payload.floats,
                        "concurrency": concurrency,
                        **load.summary(),
                    }
                    cells.append(cell)
                    print(
                        f"{transport:<10} {payload.label:>6} c={concurrency:<3}"
                        f" n={cell['requests']:<5} {cell['rps']:>8,.1f} req/s"
                        f"  p50 {cell['p50_ms']:8.2f} ms  p99 {cell['p99_ms']:8.2f} ms",
                        flush=True,
                    )
    finally:
        await rest.aclose()
        await grpc_client.aclose()
    return cells, encodings


async def _warm_up(transport: str, prepared: Prepared, x: np.ndarray, n: int) -> None:
    y = await prepared.call()
    if y.dtype != np.float32 or not np.array_equal(y, x * 2):
        raise BenchmarkFailed(f"{transport}: wrong answer ({y.dtype} {y.shape})")
    if n > 1:
        await closed_loop(prepared.call, concurrency=n, max_requests=n, budget_s=0)


# -- pipelines -----------------------------------------------------------------------------
_WARMUP_CONCURRENCY = 8


async def measure_pipeline(
    args: argparse.Namespace, http_port: int, pipeline: str
) -> tuple[Load, list[tuple[str, float, float]], float]:
    """Unloaded request-reply latency: one request at a time, after a warm-up. Returns the
    load, (id, sent, received) per measured call and the seconds to the first reply."""
    rest = RestClient(f"http://127.0.0.1:{http_port}", 1)
    x = np.random.default_rng(1).standard_normal((1, 256), dtype=np.float32)
    try:
        started = time.perf_counter()
        while True:  # the first replies wait for the workers to join their groups
            try:
                _, _, _, y = await rest.pipeline(pipeline, x)
                break
            except BenchmarkFailed:
                if time.perf_counter() - started > 120:
                    raise
                await asyncio.sleep(0.2)
        first_reply_s = time.perf_counter() - started
        if not np.array_equal(y, x * 2 ** len(STEPS)):
            raise BenchmarkFailed(f"pipeline {pipeline}: wrong answer")
        if args.pipeline_warmup:
            # A fresh broker's JVM interprets its request paths until the JIT compiles
            # them: thousands of requests, not tens (docs/benchmarks.md shows both).
            await closed_loop(
                lambda: rest.pipeline(pipeline, x),
                concurrency=_WARMUP_CONCURRENCY,
                max_requests=args.pipeline_warmup,
                budget_s=120.0,
            )
        calls: list[tuple[str, float, float]] = []

        async def call() -> None:
            rid, sent, received, _ = await rest.pipeline(pipeline, x)
            calls.append((rid, sent, received))

        load = await closed_loop(
            call, concurrency=1, max_requests=args.pipeline_requests, budget_s=120.0
        )
        return load, calls, first_reply_s
    finally:
        await rest.aclose()


def run_pipelines(
    args: argparse.Namespace, bootstrap: str, specs: Specs, children: Children, http_port: int
) -> list[dict[str, Any]]:
    workers = {
        guarantee: children.start(
            f"workers-{guarantee}",
            ["run", str(spec.source), "--bootstrap", bootstrap, *(["--fuse"] if args.fuse else [])],
        )
        for guarantee, spec in specs.pipelines.items()
    }
    rows = []
    for guarantee in ("at_least_once", "exactly_once"):
        spec = specs.pipelines[guarantee]
        load, calls, first_reply_s = asyncio.run(measure_pipeline(args, http_port, spec.name))
        if not workers[guarantee].alive():
            raise BenchmarkFailed(f"the {guarantee} workers exited")
        row = {
            "guarantee": guarantee,
            "pipeline": spec.name,
            "first_reply_s": first_reply_s,
            **load.summary(),
            "hops_ms": hops(bootstrap, spec, list(STEPS), calls),
        }
        rows.append(row)
        print(
            f"pipeline {guarantee:<13} n={row['requests']} p50 {row['p50_ms']:.1f} ms"
            f"  p99 {row['p99_ms']:.1f} ms  (first reply after {first_reply_s:.1f}s)",
            flush=True,
        )
    for child in workers.values():
        children.stop(child)
    return rows


# -- main ----------------------------------------------------------------------------------
def _list(kind: type, text: str) -> list[Any]:
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _payloads(text: str) -> list[Payload]:
    chosen = [v.strip().replace(" ", "").upper() for v in text.split(",") if v.strip()]
    by_upper = {k.upper(): p for k, p in PAYLOADS.items()}
    unknown = [c for c in chosen if c not in by_upper]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown payload {unknown[0]}; pick from {list(PAYLOADS)}"
        )
    return [by_upper[c] for c in chosen]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="PNG plot path")
    parser.add_argument("--no-plot", action="store_true", help="do not write the plot")
    parser.add_argument(
        "--payloads", type=_payloads, default=list(PAYLOADS.values()), help="1KB,100KB,1MB,8MB"
    )
    parser.add_argument(
        "--concurrency", type=lambda t: _list(int, t), default=[1, 8, 32], help="e.g. 1,8,32"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=1.5,
        help="seconds of load per cell at most (after the first request of each caller)",
    )
    parser.add_argument("--part", choices=["both", "transports", "pipeline"], default="both")
    parser.add_argument(
        "--pipeline-requests", type=int, default=150, help="measured, per guarantee"
    )
    parser.add_argument(
        "--pipeline-warmup",
        type=int,
        default=1000,
        help=f"unmeasured requests per guarantee, {_WARMUP_CONCURRENCY} at a time",
    )
    parser.add_argument(
        "--step-max-wait-ms",
        type=float,
        help="batch max_wait_ms of the pipeline steps (default: the project's default)",
    )
    parser.add_argument(
        "--fuse",
        action="store_true",
        help="run each pipeline's steps fused: one worker, one group, one transaction per commit",
    )
    parser.add_argument(
        "--patch-tcp-nodelay",
        action="store_true",
        help="for comparison: run the server with TCP_NODELAY forced on its REST connections "
        "(patched in memory; see _serving.py)",
    )
    args = parser.parse_args(argv)
    if not args.concurrency or min(args.concurrency) < 1:
        parser.error("--concurrency takes positive integers")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    command = shlex.join(sys.orig_argv)
    print(f"command: {command}", flush=True)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    run_id = uuid.uuid4().hex[:6]
    started = time.perf_counter()
    load_before = os.getloadavg()
    cells: list[dict[str, Any]] = []
    encodings: list[dict[str, Any]] = []
    pipelines: list[dict[str, Any]] = []
    with (
        kafka_bootstrap(args.bootstrap) as bootstrap,
        tempfile.TemporaryDirectory(prefix="streamdag-grpc-rest-") as tmp,
    ):
        specs = write_specs(Path(tmp), run_id, step_max_wait_ms=args.step_max_wait_ms)
        try:
            create_pipeline_topics(bootstrap, specs)
            with Children(Path(tmp)) as children:
                http_port, grpc_port = free_port(), free_port()
                server = children.start(
                    "server",
                    [
                        "serve",
                        *map(str, specs.files()),
                        "--http-port",
                        str(http_port),
                        "--grpc-port",
                        str(grpc_port),
                        "--bootstrap",
                        bootstrap,
                    ],
                    TCP_NODELAY_PATCH if args.patch_tcp_nodelay else "",
                )
                ready_s = wait_ready(server, f"http://127.0.0.1:{http_port}/v2/health/ready")
                print(f"server pid {server.pid} ready in {ready_s:.1f}s", flush=True)
                if args.part in ("both", "transports"):
                    cells, encodings = asyncio.run(measure_transports(args, http_port, grpc_port))
                if args.part in ("both", "pipeline"):
                    pipelines = run_pipelines(args, bootstrap, specs, children, http_port)
                if not server.alive():
                    raise BenchmarkFailed(f"the server exited:\n{server.log_tail()}")
        finally:
            if args.bootstrap:
                delete_pipeline_topics(bootstrap, specs)
    load_after = os.getloadavg()
    total_s = time.perf_counter() - started
    print()
    print_report(cells, encodings, pipelines)
    print(
        f"\ntotal {total_s:.0f}s; load average (1 min) {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after"
    )
    if cells and not args.no_plot:
        plot(cells, args.plot, concurrency=8 if 8 in args.concurrency else args.concurrency[0])
        print(f"plot written to {args.plot}")
    if args.json is not None:
        result = {
            "benchmark": "grpc_vs_rest",
            "command": command,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {
                **machine(),
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "packages": {
                    p: version(p)
                    for p in ("grpcio", "protobuf", "httpx", "uvicorn", "fastapi", "numpy")
                },
            },
            "params": {
                "payloads": [vars(p) for p in args.payloads],
                "concurrency": args.concurrency,
                "budget_s": args.budget_s,
                "served_batch": {"max_size": 64, "max_wait_ms": 0},
                "pipeline_steps": len(STEPS),
                "step_max_wait_ms": args.step_max_wait_ms,
                "pipeline_requests": args.pipeline_requests,
                "pipeline_warmup": args.pipeline_warmup,
                "patch_tcp_nodelay": args.patch_tcp_nodelay,
            },
            "total_s": total_s,
            "encodings": encodings,
            "results": cells,
            "pipelines": pipelines,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
