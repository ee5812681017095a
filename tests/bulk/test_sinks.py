"""Sinks and sources with no broker: rewinding to a checkpoint, Parquet from the spool."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from streamdag.bulk import count_rows, open_sink, open_source


def test_jsonl_rewinds_to_a_checkpoint(tmp_path: Path) -> None:
    sink = open_sink(tmp_path / "out.jsonl")
    sink.write({"id": "a"})
    checkpoint = sink.position()
    sink.write({"id": "b"})
    sink.close(complete=False)
    again = open_sink(tmp_path / "out.jsonl")  # a resumed job
    again.rewind(checkpoint)
    again.write({"id": "c"})
    again.close(complete=True)
    ids = [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert ids == ["a", "c"]


def test_parquet_is_written_from_the_spool_with_every_column(tmp_path: Path) -> None:
    sink = open_sink(tmp_path / "out.parquet")
    sink.write({"id": "a", "route": "accept", "step": "accept"})
    sink.write({"id": "b", "route": "review", "queue": "coding", "step": "review"})
    sink.close(complete=True)
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert rows[0] == {"id": "a", "route": "accept", "step": "accept", "queue": None}
    assert rows[1]["queue"] == "coding"
    assert not list(tmp_path.glob(".out.parquet*"))


def test_sources_stream_rows_with_ids(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("key,x\na,1\nb,2\n")
    rows = list(open_source(str(tmp_path / "rows.csv"), id_column="key"))
    assert [(r.number, r.id, dict(r.columns)) for r in rows] == [
        (0, "a", {"x": "1"}), (1, "b", {"x": "2"})
    ]  # fmt: skip
    assert count_rows(str(tmp_path / "rows.csv")) == 2
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "one.txt").write_text("hello")
    texts = list(open_source(str(tmp_path / "docs"), text_input="note"))
    assert [(r.id, dict(r.columns)) for r in texts] == [("one.txt", {"note": b"hello"})]
