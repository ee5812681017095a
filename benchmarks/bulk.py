"""Bulk jobs, in two parts, on one broker (started on a free port unless ``--bootstrap``):

notes   ``--notes N`` synthetic notes through the demo's medical-records pipeline with
        ``streamdag submit``, against the same notes through the REST door by 16
        concurrent callers, on the same workers: notes/s of each and the ratio, once per
        ``--processes`` count of ``streamdag run`` (``_bulk_notes.py``).
volume  ``streamdag submit`` of N rows of about 1 KB through a one-step pipeline
        (``y = 2 * x``, x a list of 128 integers, exactly_once, 4 partitions), with one
        ``streamdag run`` worker: rows/s, whether every row is in the output once, and the
        submitter's peak RSS (its own, from ``wait4``), for each row count of ``--rows``:
        peak memory must not grow with it.

The machine may be shared: each figure comes with the 1-minute load average.

    .venv/bin/python benchmarks/bulk.py [--notes 10000] [--processes 1,2]
        [--rows 100000,1000000] [--bootstrap HOST:PORT]      (0 or '' skips a part)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import yaml
from _broker import kafka_bootstrap
from _bulk_notes import CALLERS, compare, write_notes
from _drain import BenchmarkFailed, run_main

from streamdag.demo.example import MedicalRecords

HERE = Path(__file__).resolve().parent


def _spec(folder: Path) -> Path:
    shutil.copy(HERE / "_handlers.py", folder / "_handlers.py")
    spec = {
        "name": f"bulk-{uuid.uuid4().hex[:8]}",
        "partitions": 4,
        "models": {
            "double": {
                "runtime": "python",
                "handler": "_handlers:double",
                "batch": {"max_size": 512, "max_wait_ms": 5},
            }
        },
        "steps": [{"name": "s", "model": "double"}],
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _rows(path: Path, n: int) -> None:
    with path.open("wb") as out:
        for i in range(n):
            out.write(orjson.dumps({"x": [i % 1000] * 128}) + b"\n")


def _streamdag(*args: str, log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "streamdag.cli.main", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )


def measure(bootstrap: str, n: int, folder: Path) -> dict[str, float]:
    spec = _spec(folder)
    source, out, log = folder / f"rows-{n}.jsonl", folder / f"out-{n}.jsonl", folder / "log"
    _rows(source, n)
    worker = _streamdag("run", str(spec), "-b", bootstrap, log=log, cwd=folder)
    try:
        started = time.monotonic()
        submit = _streamdag(
            "submit", str(spec), "-i", str(source), "-o", str(out), "-b", bootstrap, "-q",
            log=log, cwd=folder,
        )  # fmt: skip
        _, status, usage = os.wait4(submit.pid, 0)
        seconds = time.monotonic() - started
    finally:
        worker.terminate()
        worker.wait(60)
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchmarkFailed(f"submit of {n} rows failed:\n{log.read_text()[-2000:]}")
    ids = [orjson.loads(line)["id"] for line in out.open("rb")]
    if len(ids) != n or len(set(ids)) != n:
        raise BenchmarkFailed(f"{len(ids)} output rows, {len(set(ids))} ids, for {n} rows")
    return {
        "rows": n,
        "seconds": seconds,
        "rows_per_s": n / seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "load_avg": os.getloadavg()[0],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.rows.split(",") if c.strip()]
    with kafka_bootstrap(args.bootstrap) as bootstrap, tempfile.TemporaryDirectory() as tmp:
        if args.notes > 0:
            notes(bootstrap, args.notes, [int(p) for p in args.processes.split(",")], Path(tmp))
        for n in counts:
            found = measure(bootstrap, n, Path(tmp))
            print(
                f"{n:>9,} rows: every row once, {found['seconds']:.1f} s, "
                f"{found['rows_per_s']:,.0f} rows/s, submitter peak RSS "
                f"{found['peak_rss_mb']:.0f} MB (load {found['load_avg']:.1f})",
                flush=True,
            )
    return 0


def notes(bootstrap: str, n: int, processes: list[int], work: Path) -> None:
    example = MedicalRecords()
    example.ensure_models()
    texts = write_notes(example, n, work / "notes")
    for count in processes:
        found = compare(example, bootstrap, texts, work / "notes", count, work)
        print(
            f"{n:,} notes, run --processes {count}: REST door ({CALLERS} callers) "
            f"{found.rest_per_s:.1f} notes/s ({found.rest_s:.0f} s, load "
            f"{found.load_avg[0]:.1f}), submit {found.submit_per_s:.1f} notes/s "
            f"({found.submit_s:.0f} s, load {found.load_avg[1]:.1f}): "
            f"{found.ratio:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    run_main(main)
