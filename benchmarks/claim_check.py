"""The claim check's cost: large requests through a payload store against the same
requests sent inline with Kafka's limits raised, in the same run.

1. One broker (started on a free port unless ``--bootstrap`` is given) and two 1-step
   pipelines (python step ``y = 2 * x`` on FP32 ``[1, n]``, exactly_once, 1 partition):
   - ``store``: `streamdag run` and `streamdag serve` with ``--payload-store
     file://<tmp>`` and Kafka's default limits: records over 900,000 bytes travel as
     stubs (request, and the step's result on its own and the pipeline's outputs topic);
   - ``inline``: no store; the pipeline's topics get ``max.message.bytes`` = 64 MiB (the
     broker-side limit) and its workers and gateway ``message.max.bytes`` = 64 MiB
     (``--kafka-config``), so every record carries its whole value.
2. For each size (100 KB, 1 MB, 5 MB, 20 MB) one REST caller (tritonclient.http, binary
   tensor extension) sends requests one at a time, alternating store / inline so both see
   the same machine load; after a few unmeasured requests per size, the time from send to
   decoded answer is recorded, and its median (p50) and p90 are reported.

    .venv/bin/python benchmarks/claim_check.py [--bootstrap HOST:PORT] [--json PATH]
        [--sizes 100KB,1MB,5MB,20MB] [--requests 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as triton_http
import yaml
from _broker import kafka_bootstrap
from _drain import BenchmarkFailed
from _machine import machine
from _serving import Children, wait_ready

from streamdag.broker import free_port
from streamdag.kafka import TopicSpec, ensure_topics
from streamdag.pipeline import derive_topics, load_spec

HERE = Path(__file__).resolve().parent
RAISED = 64 * 1024 * 1024
SIZES = {"100KB": 100_000, "1MB": 1_000_000, "5MB": 5_000_000, "20MB": 20_000_000}
MODES = ("store", "inline")


def write_spec(folder: Path, name: str) -> Path:
    shutil.copy(HERE / "_handlers.py", folder / "_handlers.py")
    spec = {
        "name": name,
        "partitions": 1,
        "timeout_ms": 120_000,
        "models": {"double": {"runtime": "python", "handler": "_handlers:double"}},
        "steps": [{"name": "s", "model": "double"}],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def start(children: Children, mode: str, spec: Path, bootstrap: str, extra: list[str]) -> int:
    """The pipeline's workers and a server for it; the server's REST port once ready."""
    http_port = free_port()
    children.start(f"run-{mode}", ["run", str(spec), "-b", bootstrap, *extra])
    ports = ["--http-port", str(http_port), "--grpc-port", str(free_port())]
    server = children.start(f"serve-{mode}", ["serve", str(spec), "-b", bootstrap, *ports, *extra])
    wait_ready(server, f"http://127.0.0.1:{http_port}/v2/health/ready")
    return http_port


def call(client: Any, pipeline: str, x: np.ndarray) -> float:
    tensor = triton_http.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    wanted = [triton_http.InferRequestedOutput("y", binary_data=True)]
    started = time.perf_counter()
    answer = client.infer(pipeline, [tensor], outputs=wanted, request_id=uuid.uuid4().hex)
    y = answer.as_numpy("y")
    took = time.perf_counter() - started
    if y is None or y.shape != x.shape or float(y[0, -1]) != float(x[0, -1]) * 2:
        raise BenchmarkFailed(f"{pipeline}: wrong answer for a {x.nbytes:,}-byte request")
    return took


def measure(args: argparse.Namespace, bootstrap: str, folder: Path) -> list[dict[str, Any]]:
    run_id = uuid.uuid4().hex[:8]
    specs = {mode: write_spec(folder, f"bench-cc-{mode}-{run_id}") for mode in MODES}
    # Inline records need the broker-side limit of their topics raised before first use.
    inline_topics = derive_topics(load_spec(specs["inline"]))
    raised = {"max.message.bytes": str(RAISED)}
    ensure_topics(
        bootstrap, [TopicSpec(t.name, t.partitions, t.compacted, raised) for t in inline_topics]
    )
    client_config = folder / "inline.properties"
    client_config.write_text(
        f"message.max.bytes={RAISED}\nfetch.max.bytes={RAISED}\n"
        f"max.partition.fetch.bytes={RAISED}\nreceive.message.max.bytes={RAISED + 1024}\n"
    )
    store = f"file://{folder}/payloads"
    extra = {"store": ["--payload-store", store], "inline": ["--kafka-config", str(client_config)]}
    rows = []
    with Children(folder) as children:
        ports = {m: start(children, m, specs[m], bootstrap, extra[m]) for m in MODES}
        clients = {
            m: triton_http.InferenceServerClient(
                f"127.0.0.1:{ports[m]}", network_timeout=300, connection_timeout=60
            )
            for m in MODES
        }
        names = {m: load_spec(specs[m]).name for m in MODES}
        for label in args.sizes.split(","):
            floats = SIZES[label] // 4
            x = (np.arange(floats, dtype=np.float32) % 1000).reshape(1, floats)
            for _ in range(args.warmup):
                for m in MODES:
                    call(clients[m], names[m], x)
            seconds: dict[str, list[float]] = {m: [] for m in MODES}
            for _ in range(args.requests):
                for m in MODES:
                    seconds[m].append(call(clients[m], names[m], x))
            for m in MODES:
                ms = sorted(s * 1000 for s in seconds[m])
                rows.append(
                    {
                        "size": label,
                        "bytes": x.nbytes,
                        "mode": m,
                        "requests": len(ms),
                        "p50_ms": statistics.median(ms),
                        "p90_ms": ms[int(0.9 * (len(ms) - 1))],
                    }
                )
                print(f"{label:>6} {m:<7} p50 {rows[-1]['p50_ms']:9.1f} ms", flush=True)
        for c in clients.values():
            c.close()
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'size':>6} {'store p50':>10} {'inline p50':>11} {'store/inline':>12}"
        f" {'store p90':>10} {'inline p90':>11}"
    )
    by = {(r["size"], r["mode"]): r for r in rows}
    for size in dict.fromkeys(r["size"] for r in rows):
        s, i = by[(size, "store")], by[(size, "inline")]
        ratio = s["p50_ms"] / i["p50_ms"]
        print(
            f"{size:>6} {s['p50_ms']:>8.1f}ms {i['p50_ms']:>9.1f}ms {ratio:>12.2f}"
            f" {s['p90_ms']:>8.1f}ms {i['p90_ms']:>9.1f}ms"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=None, help="use this broker (else start one)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--sizes", default=",".join(SIZES), help="of " + ",".join(SIZES))
    parser.add_argument("--requests", type=int, default=20, help="measured per size and mode")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured per size and mode")
    args = parser.parse_args(argv)
    unknown = [s for s in args.sizes.split(",") if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    started = dt.datetime.now(dt.UTC)
    with (
        kafka_bootstrap(args.bootstrap) as bootstrap,
        tempfile.TemporaryDirectory(prefix="streamdag-cc-") as tmp,
    ):
        rows = measure(args, bootstrap, Path(tmp))
    print_table(rows)
    if args.json is not None:
        report = {
            "benchmark": "claim_check",
            "started": started.isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine(),
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
