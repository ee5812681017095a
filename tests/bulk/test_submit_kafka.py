"""``streamdag submit`` and ``streamdag.submit`` against the real broker: every row once
in the output, refused and failed rows in the errors file, Parquet in and out."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kafka_support import run_pipeline

import streamdag
from streamdag.bulk import read_jobs
from streamdag.cli.main import main
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
