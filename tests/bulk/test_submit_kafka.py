"""``streamdag submit`` and ``streamdag.submit`` against the real broker: every row once
in the output, refused and failed rows in the errors file, Parquet in and out, large rows
through the payload store, and the progress a person reads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kafka_support import run_pipeline

import streamdag
from streamdag.bulk import read_jobs
from streamdag.cli.main import main
from streamdag.payloads import PayloadStore
from streamdag.pipeline import load_spec


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_api_yields_every_row_once(bootstrap: str, pipeline_spec: Callable[..., Path]) -> None:
    spec = load_spec(pipeline_spec())
    rows = [{"key": f"r{i}", "x": i + 20} for i in range(300)]  # 13 is poison
    with run_pipeline(spec, bootstrap):
        results = list(
            streamdag.submit(spec, rows, kafka=bootstrap, id_column="key", max_in_flight=50)
        )
    assert sorted(r.id for r in results) == sorted(f"r{i}" for i in range(300))
    for r in results:
        assert r.ok and r.step == "double"
        assert r.outputs["y"].tolist() == [[2 * (int(r.id[1:]) + 20)]]


def test_submit_jsonl_with_invalid_and_poison_rows_exits_1(
    bootstrap: str, pipeline_spec: Callable[..., Path], tmp_path: Path
) -> None:
    path = pipeline_spec()
    spec = load_spec(path)
    source = tmp_path / "rows.jsonl"
    rows = [{"id": f"n{i}", "x": i} for i in range(200)]
    rows[5]["x"] = "five"  # invalid: not INT64
    rows[7] = {"id": "n7", "z": 1}  # invalid: no x
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    with run_pipeline(spec, bootstrap):
        status = main(
            ["submit", str(path), "-i", str(source), "-o", str(out), "--id-column", "id",
             "-b", bootstrap, "--quiet", "--job", "poison"]
        )  # fmt: skip
    assert status == 1
    results = _lines(out)
    errors = _lines(tmp_path / "out.errors.jsonl")
    assert sorted(r["id"] for r in results) == sorted(
        f"n{i}" for i in range(200) if i not in (5, 7, 13)
    )
    assert all(r["y"] == [2 * int(str(r["id"])[1:])] and r["step"] == "double" for r in results)
    by_id = {e["id"]: e for e in errors}
    assert set(by_id) == {"n5", "n7", "n13"}
    assert by_id["n5"]["code"] == by_id["n7"]["code"] == "invalid_argument"
    assert by_id["n5"]["row"] == 5 and by_id["n5"]["step"] is None
    assert by_id["n13"]["code"] == "model_error" and by_id["n13"]["step"] == "double"
    assert "13" in str(by_id["n13"]["message"])
    job = read_jobs(bootstrap, spec.name)["poison"]  # type: ignore[arg-type]
    assert (job.done, job.read, job.results, job.failures) == (True, 200, 197, 3)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_submit_csv_and_parquet_to_parquet(
    kind: str, bootstrap: str, pipeline_spec: Callable[..., Path], tmp_path: Path
) -> None:
    path = pipeline_spec()
    spec = load_spec(path)
    source = tmp_path / f"rows.{kind}"
    if kind == "csv":
        source.write_text("x,note\n" + "".join(f"{i + 20},row {i}\n" for i in range(100)))
    else:
        notes = [f"row {i}" for i in range(100)]
        pq.write_table(pa.table({"x": np.arange(100) + 20, "note": notes}), source)
    out = tmp_path / "out.parquet"
    with run_pipeline(spec, bootstrap):
        status = main(["submit", str(path), "-i", str(source), "-o", str(out), "-b", bootstrap,
                       "-q"])  # fmt: skip
    assert status == 0
    table = pq.read_table(out).to_pylist()
    assert sorted(int(r["id"]) for r in table) == list(range(100))
    assert all(r["y"] == [2 * (int(r["id"]) + 20)] for r in table)
    assert not list(tmp_path.glob(".out.parquet.*"))  # the spool is gone


def test_submit_folder_of_text_files(
    bootstrap: str, pipeline_spec: Callable[..., Path], tmp_path: Path
) -> None:
    path = pipeline_spec(
        """
name: "{name}"
partitions: 2
models:
  words: {runtime: python, handler: "bulk_models:words", inputs: [{name: text, datatype: BYTES}],
          outputs: [words]}
steps:
  - {name: words, model: words}
"""
    )
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(20):
        (notes / f"note-{i:02}.txt").write_text(" ".join(["word"] * (i + 1)))
    out = tmp_path / "words.jsonl"
    with run_pipeline(load_spec(path), bootstrap):
        status = main(["submit", str(path), "-i", f"{notes}/*.txt", "-o", str(out),
                       "-b", bootstrap, "-q"])  # fmt: skip
    assert status == 0
    found = {r["id"]: r["words"] for r in _lines(out)}
    assert found == {f"note-{i:02}.txt": [i + 1] for i in range(20)}


def test_large_rows_go_through_the_payload_store(
    bootstrap: str, pipeline_spec: Callable[..., Path], tmp_path: Path
) -> None:
    # x undeclared: a list of ints is an INT64 tensor [1, n].
    path = pipeline_spec(
        """
name: "{name}"
partitions: 2
models:
  double: {runtime: python, handler: "bulk_models:double", outputs: [y]}
steps:
  - {name: double, model: double}
"""
    )
    spec = load_spec(path)
    store = PayloadStore(f"file://{tmp_path}/payloads", inline_max_bytes=4096)
    # Every fourth row is 2,000 INT64 values, 16 KB: over the inline limit both ways.
    rows = [{"key": f"r{i}", "x": [i + 20] * (2000 if i % 4 == 0 else 3)} for i in range(40)]
    with run_pipeline(spec, bootstrap, payloads=store):
        results = list(
            streamdag.submit(spec, rows, kafka=bootstrap, id_column="key", payloads=store)
        )
    assert sorted(r.id for r in results) == sorted(f"r{i}" for i in range(40))
    for r in results:
        i = int(r.id[1:])
        assert r.ok, r.error
        assert r.outputs["y"].tolist() == [[2 * (i + 20)] * (2000 if i % 4 == 0 else 3)]
    # The ten large requests and their ten answers were claim checks, the rest inline.
    objects = [p for p in (tmp_path / "payloads").rglob("*") if p.is_file()]
    assert len(objects) == 20, objects


def _submit_process(path: Path, source: Path, out: Path, bootstrap: str, *extra: str) -> Any:
    """``streamdag submit`` with stdout and stderr to pipes: no terminal."""
    return subprocess.run(
        [sys.executable, "-m", "streamdag.cli.main", "submit", str(path), "-i", str(source),
         "-o", str(out), "-b", bootstrap, "--max-in-flight", "100", *extra],
        capture_output=True, text=True, cwd=path.parent, timeout=120, check=False,
    )  # fmt: skip


def test_progress_without_a_terminal_and_with_quiet(
    bootstrap: str, pipeline_spec: Callable[..., Path], tmp_path: Path
) -> None:
    path = pipeline_spec()
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(f'{{"x": {i + 20}}}\n' for i in range(1000)))
    summary = re.compile(
        r"job (\S+) done: 1,000 rows, 1,000 results, 0 failures in (\d+\.\d) s \([\d,]+ rows/s\)"
    )
    with run_pipeline(load_spec(path), bootstrap):
        shown = _submit_process(path, source, tmp_path / "a.jsonl", bootstrap, "--job", "shown")
        quiet = _submit_process(path, source, tmp_path / "b.jsonl", bootstrap, "--job", "quiet",
                                "--quiet")  # fmt: skip
        again = _submit_process(path, source, tmp_path / "a.jsonl", bootstrap, "--job", "shown")
    assert shown.returncode == quiet.returncode == again.returncode == 0, shown.stderr

    # No terminal: plain lines, never a bar redrawn with carriage returns.
    assert "\r" not in shown.stderr
    lines = [ln for ln in shown.stderr.splitlines() if ln.startswith("job shown: ")]
    assert len(lines) >= 2, shown.stderr  # when the job opens, and at its end
    assert lines[0].startswith("job shown: 0/1,000 rows answered (0%), 0 failed, ")
    assert re.fullmatch(
        r"job shown: 1,000/1,000 rows answered \(100%\), 0 failed, 1,000 sent, 0 in flight, "
        r"[\d,]+ rows/s, ETA 0 s",
        lines[-1],
    ), lines[-1]
    first = summary.fullmatch(shown.stdout.strip())
    assert first is not None and first[1] == "shown", shown.stdout

    # --quiet: the summary, and log lines only (none at the default level here).
    assert quiet.stderr == "", quiet.stderr
    assert summary.fullmatch(quiet.stdout.strip()), quiet.stdout

    # A finished job run again: its summary, with the job's own time (from its state made
    # to its last checkpoint: the command's start-up left out), not this run's.
    rerun = summary.fullmatch(again.stdout.strip())
    assert rerun is not None, again.stdout
    assert float(first[2]) / 2 <= float(rerun[2]) <= float(first[2]), (shown.stdout, again.stdout)
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 1000
