"""Where a job's rows come from, one at a time: a file is never read whole.

``open_source`` picks the reader by the input's form: ``.jsonl``/``.ndjson`` (one JSON
object a line, read with orjson), ``.csv`` (the standard csv module: values are text, typed
by the pipeline's declarations), ``.parquet`` (pyarrow, one record batch at a time), or a
folder or glob of text files (one document per file, its text as the BYTES input named by
``text_input``, the file's name as its id). Any other iterable of mappings (a pandas
DataFrame included) is taken as it is, by ``rows_of``.
"""

from __future__ import annotations

import csv
import glob
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from streamdag.errors import ConfigError

__all__ = ["SourceRow", "count_rows", "open_source", "rows_of"]


@dataclass(slots=True)
class SourceRow:
    """One row: its number in the source (from 0), its id, and its columns."""

    number: int
    id: str
    columns: Mapping[str, Any]


def _ids(records: Iterable[Mapping[str, Any]], id_column: str | None) -> Iterator[SourceRow]:
    for number, record in enumerate(records):
        if id_column is None:
            yield SourceRow(number, str(number), record)
            continue
        columns = dict(record)
        found = columns.pop(id_column, None)
        yield SourceRow(number, "" if found is None else str(found), columns)


def rows_of(rows: Any, id_column: str | None = None) -> Iterator[SourceRow]:
    """The rows of an iterable of mappings, or of a pandas DataFrame."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        records: Iterable[Mapping[str, Any]] = (
            dict(zip(rows.columns, values, strict=True))
            for values in rows.itertuples(index=False, name=None)
        )
    else:
        records = rows
    return _ids(records, id_column)


def open_source(
    source: str, *, id_column: str | None = None, text_input: str | None = None
) -> Iterator[SourceRow]:
    """The rows of a file, folder or glob (see the module's docstring)."""
    files = _text_files(source)
    if files is not None:
        name = text_input or "text"
        return (SourceRow(n, f.name, {name: f.read_bytes()}) for n, f in enumerate(files))
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"input {source}: no such file, folder or glob")
    kind = _kind(path)
    if kind == "parquet":
        return _ids(_parquet(path), id_column)
    if kind == "csv":
        return _ids(_csv(path), id_column)
    return _ids(_jsonl(path), id_column)


def count_rows(source: str) -> int | None:
    """How many rows a source holds, cheaply (for the progress bar's ETA)."""
    files = _text_files(source)
    if files is not None:
        return len(files)
    path = Path(source)
    if not path.is_file():
        return None
    kind = _kind(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as lines:
        count = sum(1 for line in lines if line.strip())
    return count - 1 if kind == "csv" else count


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise ConfigError(
        f"input {path}: unknown format {suffix or '(no extension)'}; use .jsonl, .csv, "
        ".parquet, or a folder or glob of text files"
    )


def _text_files(source: str) -> list[Path] | None:
    """The files of a folder or glob, sorted (so a resumed job meets them in the same
    order); None for a single file."""
    path = Path(source)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if glob.has_magic(source):
        return sorted(Path(p) for p in glob.glob(source) if Path(p).is_file())
    return None


def _jsonl(path: Path) -> Iterator[Mapping[str, Any]]:
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ConfigError(f"input {path}, line {number}: not JSON: {exc}") from None
            if not isinstance(record, dict):
                raise ConfigError(f"input {path}, line {number}: not a JSON object")
            yield record


def _csv(path: Path) -> Iterator[Mapping[str, Any]]:
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    with path.open(newline="", encoding="utf-8") as text:
        yield from csv.DictReader(text, dialect=dialect)


def _parquet(path: Path) -> Iterator[Mapping[str, Any]]:
    import pyarrow.parquet as pq  # here: only Parquet needs it

    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        yield from batch.to_pylist()
