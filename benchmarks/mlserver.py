"""streamdag serve vs MLServer 1.7: one model, y = 2x, over REST (OIP JSON) and gRPC.

1. MLServer runs from a virtual environment of its own (``.bench-venvs/mlserver``, created
   on first use; never the project's dependencies) with ``parallel_workers: 0``: the model
   runs in the server's own process, as ``streamdag serve`` runs it. Its model is an
   ``MLModel`` that decodes ``x`` with ``NumpyCodec``, doubles it and encodes ``y``.
2. ``streamdag serve`` serves the same function (``runtime: python``, batch
   ``max_wait_ms: 0``) on its model route; its pipeline gateway needs a broker, started
   on a free port unless ``--bootstrap`` is given, and stays idle.
3. Both servers run at once, each in its own process, on free 127.0.0.1 ports. For each
   repeat, server (the order alternates) and transport, this process keeps
   ``--concurrency`` requests in flight in a closed loop for ``--budget-s`` seconds (or
   ``--max-requests``), after a warm-up whose first answer is checked. A request is one
   1 KB FP32 tensor ``x`` of shape [1, 256]: REST sends the same OIP JSON body to both
   (over keep-alive connections of a minimal HTTP/1.1 client, so that the client is not
   the bottleneck), gRPC the same ``ModelInferRequest`` with raw contents (as
   tritonclient sends it). Every answer is decoded into numpy, as a client would.

The report gives the median requests/s of the repeats and streamdag / MLServer per
transport (targets: REST >= 1.3, gRPC >= 1.5), and each server process's CPU time per
request (user + system, all threads, from ``/proc``): on a machine shared with other
work, requests/s follow whatever CPU the servers get, CPU per request much less so.

    .venv/bin/python benchmarks/mlserver.py [--repeats 3] [--concurrency 16]
        [--budget-s 5] [--max-requests 50000] [--warmup 500] [--bootstrap HOST:PORT]
        [--json PATH] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shlex
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from _broker import kafka_bootstrap
from _drain import BenchmarkFailed, run_main
from _loadgen import GrpcClient, closed_loop
from _machine import machine
from _mlserverenv import MLServerEnv, mlserver_env
from _serving import Children, wait_ready

from streamdag.broker import free_port
from streamdag.kafka import ensure_topics
from streamdag.pipeline import derive_topics, load_spec

HERE = Path(__file__).resolve().parent
MODEL = "double"
FLOATS = 256  # 1 KB of FP32
SERVERS = ("streamdag", "mlserver")
TRANSPORTS = ("rest", "grpc")
TARGETS = {"rest": 1.3, "grpc": 1.5}
IDLE_S = 3.0

SPEC = """\
name: bench-mlserver-{run}
models:
  double:
    runtime: python
    handler: "_handlers:double"
    batch: {{max_size: 64, max_wait_ms: 0}}
steps:
  - {{name: s, model: double}}
"""
MLSERVER_MODEL = """\
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class Double(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output("y", x * 2)],
        )
"""


# -- a minimal HTTP/1.1 client ---------------------------------------------------------
class RawHttp:
    """POSTs one body over ``connections`` keep-alive connections, one request at a time
    each: a few microseconds of client work per request, where httpx takes hundreds."""

    def __init__(self, port: int, path: str, body: bytes, connections: int) -> None:
        self.port = port
        self.request = (
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.connections = connections
        self.opened: list[asyncio.StreamWriter] = []

    async def open(self) -> None:
        for _ in range(self.connections):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.opened.append(writer)
            self.idle.put_nowait((reader, writer))

    async def close(self) -> None:
        for writer in self.opened:
            writer.close()

    async def post(self) -> bytes:
        reader, writer = await self.idle.get()
        writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head[9:12]
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise BenchmarkFailed(f"a reply without content-length: {head[:200]!r}")
        body = await reader.readexactly(length)
        self.idle.put_nowait((reader, writer))
        if status != b"200":
            raise BenchmarkFailed(f"POST: {status.decode()} {body[:300]!r}")
        return body


def rest_call(client: RawHttp) -> Callable[[], Awaitable[np.ndarray]]:
    async def call() -> np.ndarray:
        out = orjson.loads(await client.post())["outputs"][0]
        return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])

    return call


# -- one measurement -------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    args: argparse.Namespace,
    ports: dict[str, tuple[int, int]],
    pids: dict[str, int],
    x: np.ndarray,
) -> list[dict[str, Any]]:
    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x}]},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    rows = []
    for server in SERVERS:
        # What a server spends with nothing to do (streamdag serve: its idle Kafka gateway
        # polls replies and probes the broker) is in its CPU per request too.
        before = cpu_seconds(pids[server])
        await asyncio.sleep(IDLE_S)
        idle_ms = (cpu_seconds(pids[server]) - before) / IDLE_S * 1000
        rows.append({"server": server, "transport": "idle", "cpu_ms_per_s": idle_ms})
        print(f"{server:<9} idle: {idle_ms:.0f} ms of CPU per second", flush=True)
    for repeat in range(args.repeats):
        order = SERVERS if repeat % 2 == 0 else SERVERS[::-1]
        for server in order:
            http_port, grpc_port = ports[server]
            rest = RawHttp(http_port, f"/v2/models/{MODEL}/infer", body, args.concurrency)
            await rest.open()
            grpc_client = GrpcClient(f"127.0.0.1:{grpc_port}")
            calls = {
                "rest": rest_call(rest),
                "grpc": grpc_client.model(MODEL, x, raw=True).call,
            }
            try:
                for transport in TRANSPORTS:
                    call = calls[transport]
                    y = await call()
                    if y.dtype != np.float32 or not np.array_equal(y.reshape(x.shape), x * 2):
                        raise BenchmarkFailed(f"{server} {transport}: wrong answer")
                    await closed_loop(
                        call, concurrency=args.concurrency, max_requests=args.warmup, budget_s=0
                    )
                    cpu_before = cpu_seconds(pids[server])
                    load = await closed_loop(
                        call,
                        concurrency=args.concurrency,
                        max_requests=args.max_requests,
                        budget_s=args.budget_s,
                    )
                    cpu_us = (cpu_seconds(pids[server]) - cpu_before) / load.requests * 1e6
                    row = {"repeat": repeat, "server": server, "transport": transport}
                    rows.append({**row, **load.summary(), "server_cpu_us": cpu_us})
                    print(
                        f"repeat {repeat} {server:<9} {transport:<4} n={load.requests:<6}"
                        f" {load.rate:>8,.0f} req/s  p50 {rows[-1]['p50_ms']:6.2f} ms"
                        f"  p99 {rows[-1]['p99_ms']:6.2f} ms  server CPU {cpu_us:5.0f} µs/req",
                        flush=True,
                    )
            finally:
                await rest.close()
                await grpc_client.aclose()
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def median(key: str, server: str, transport: str) -> float:
        return statistics.median(
            r[key] for r in rows if r["server"] == server and r["transport"] == transport
        )

    summary: dict[str, Any] = {
        "idle_cpu_ms_per_s": {
            r["server"]: r["cpu_ms_per_s"] for r in rows if r["transport"] == "idle"
        }
    }
    for t in TRANSPORTS:
        rps = {s: median("rps", s, t) for s in SERVERS}
        cpu = {s: median("server_cpu_us", s, t) for s in SERVERS}
        summary[t] = {
            "streamdag_rps": rps["streamdag"],
            "mlserver_rps": rps["mlserver"],
            "ratio": rps["streamdag"] / rps["mlserver"],
            "target": TARGETS[t],
            "streamdag_cpu_us": cpu["streamdag"],
            "mlserver_cpu_us": cpu["mlserver"],
            "cpu_ratio": cpu["mlserver"] / cpu["streamdag"],
        }
    return summary


def table(summary: dict[str, Any]) -> str:
    lines = [
        f"{'transport':<10} {'streamdag req/s':>16} {'MLServer req/s':>15} {'ratio':>6} target"
        f"   server CPU µs/req: {'streamdag':>9} {'MLServer':>9} {'MLServer/streamdag':>18}",
    ]
    for transport in TRANSPORTS:
        s = summary[transport]
        lines.append(
            f"{transport:<10} {s['streamdag_rps']:>16,.0f} {s['mlserver_rps']:>15,.0f}"
            f" {s['ratio']:>6.2f} >= {s['target']}"
            f"{'':>21}{s['streamdag_cpu_us']:>9,.0f} {s['mlserver_cpu_us']:>9,.0f}"
            f" {s['cpu_ratio']:>18.2f}"
        )
    idle = summary["idle_cpu_ms_per_s"]
    lines.append(
        "idle, ms of CPU per second: "
        + ", ".join(f"{server} {idle[server]:.0f}" for server in SERVERS)
    )
    return "\n".join(lines)


# -- the servers -----------------------------------------------------------------------
def write_mlserver(folder: Path, http_port: int, grpc_port: int) -> Path:
    root = folder / "mlserver"
    model = root / MODEL
    model.mkdir(parents=True)
    (model / "double_model.py").write_text(MLSERVER_MODEL)
    (model / "model-settings.json").write_text(
        json.dumps({"name": MODEL, "implementation": "double_model.Double"})
    )
    settings = {
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": free_port(),
        "parallel_workers": 0,
        "host": "127.0.0.1",
    }
    (root / "settings.json").write_text(json.dumps(settings))
    return root


def start_servers(
    children: Children, folder: Path, bootstrap: str, env: MLServerEnv, run: str
) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    """Start both servers; their (REST, gRPC) ports and pids."""
    spec_path = folder / "model.yaml"
    spec_path.write_text(SPEC.format(run=run))
    (folder / "_handlers.py").write_text((HERE / "_handlers.py").read_text())
    ensure_topics(bootstrap, derive_topics(load_spec(spec_path)))
    ports = {server: (free_port(), free_port()) for server in SERVERS}
    http_port, grpc_port = ports["streamdag"]
    streamdag = children.start(
        "streamdag-serve",
        [
            "serve",
            str(spec_path),
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(grpc_port),
            "--bootstrap",
            bootstrap,
        ],
    )
    root = write_mlserver(folder, *ports["mlserver"])
    mlserver = children.start(
        "mlserver",
        [],
        prelude="",
        argv=[str(env.mlserver), "start", str(root)],
        cwd=root,
    )
    for child, (port, _) in ((streamdag, ports["streamdag"]), (mlserver, ports["mlserver"])):
        ready_s = wait_ready(child, f"http://127.0.0.1:{port}/v2/health/ready", timeout=180)
        print(f"{child.name} pid {child.pid} ready in {ready_s:.1f}s", flush=True)
    return ports, {"streamdag": streamdag.pid, "mlserver": mlserver.pid}


# -- main ------------------------------------------------------------------------------
def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--budget-s", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--max-requests", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured requests")
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--quick", action="store_true", help="1 repeat of 1 s: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.budget_s, args.warmup = 1, 1.0, 100
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    command = shlex.join(sys.orig_argv)
    print(f"command: {command}", flush=True)
    env = mlserver_env()
    run = os.urandom(3).hex()
    x = np.random.default_rng(0).standard_normal((1, FLOATS), dtype=np.float32)
    load_before = os.getloadavg()
    with (
        kafka_bootstrap(args.bootstrap) as bootstrap,
        tempfile.TemporaryDirectory(prefix="streamdag-vs-mlserver-") as tmp,
        Children(Path(tmp)) as children,
    ):
        ports, pids = start_servers(children, Path(tmp), bootstrap, env, run)
        rows = asyncio.run(measure(args, ports, pids, x))
    load_after = os.getloadavg()
    summary = summarize(rows)
    print()
    print(table(summary))
    print(
        f"\nload average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"MLServer {env.versions['mlserver']} in {env.folder}"
    )
    if args.json is not None:
        result = {
            "benchmark": "mlserver",
            "command": command,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {
                **machine(),
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "streamdag_packages": {
                    p: version(p) for p in ("fastapi", "uvicorn", "grpcio", "protobuf", "orjson")
                },
                "mlserver_packages": env.versions,
            },
            "params": vars(args) | {"json": str(args.json), "floats": FLOATS},
            "results": rows,
            "summary": summary,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
