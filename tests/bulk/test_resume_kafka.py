"""A 20,000-row job whose submitter is SIGKILLed twice mid-run and run again ends with
every row once in its output, values right; the same when the pipeline's worker is
SIGKILLed with the submitter both times."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka_support import Workers

from streamdag.bulk import read_jobs
from streamdag.pipeline import load_spec

pytestmark = pytest.mark.slow

ROWS = 20_000


def _submitter(
    path: Path, source: Path, out: Path, bootstrap: str, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "streamdag.cli.main", "submit", str(path), "-i", str(source),
             "-o", str(out), "--id-column", "id", "--job", "chaos", "-b", bootstrap, "-q",
             "--max-in-flight", "1000"],
            stdout=sink, stderr=subprocess.STDOUT, cwd=path.parent,
        )  # fmt: skip


def _lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for _ in f)


def _wait_for_lines(path: Path, at_least: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while _lines(path) < at_least:
        assert proc.poll() is None, "the submitter ended before it was killed"
        assert time.monotonic() < deadline, f"{_lines(path)} answers after 90 s"
        time.sleep(0.05)


@pytest.mark.parametrize("with_worker", [False, True], ids=["submitter", "submitter+worker"])
def test_sigkilled_twice_resumes_exactly_once(
    with_worker: bool,
    bootstrap: str,
    pipeline_spec: Callable[..., Path],
    workers: Callable[[Path], Workers],
    tmp_path: Path,
) -> None:
    path = pipeline_spec()
    spec = load_spec(path)
    source = tmp_path / "rows.jsonl"
    # x = row + 20: the model refuses 13.
    source.write_text("".join(f'{{"id": "k{i}", "x": {i + 20}}}\n' for i in range(ROWS)))
    out, log = tmp_path / "out.jsonl", tmp_path / "submit.log"
    w = workers(path)
    worker = w.start("--instance-id", "bulk-w")

    for at_least in (2_000, 9_000):
        submitter = _submitter(path, source, out, bootstrap, log)
        _wait_for_lines(out, at_least, submitter)
        os.kill(submitter.pid, signal.SIGKILL)
        if with_worker:
            w.kill(worker)  # its open transaction is aborted when it comes back
        submitter.wait(10)
        if with_worker:
            worker = w.start("--instance-id", "bulk-w")

    last = _submitter(path, source, out, bootstrap, log)
    assert last.wait(120) == 0, log.read_text()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    counts = Counter(r["id"] for r in rows)
    assert len(rows) == ROWS and set(counts) == {f"k{i}" for i in range(ROWS)}, (
        f"{len(rows)} rows, {sum(1 for c in counts.values() if c > 1)} ids more than once"
    )
    assert all(r["y"] == [2 * (int(r["id"][1:]) + 20)] for r in rows)
    assert (tmp_path / "out.errors.jsonl").read_text() == ""
    job = read_jobs(bootstrap, spec.name)["chaos"]  # type: ignore[arg-type]
    assert (job.done, job.read, job.results, job.failures) == (True, ROWS, ROWS, 0)
    assert "done: 20,000 rows, 20,000 results, 0 failures" in log.read_text()
