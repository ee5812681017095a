"""Where a job's answers go: JSON Lines or Parquet, chosen by the file's extension.

Every sink can say how much of it is durable (``position``: bytes flushed and synced)
and be cut back to such a position (``rewind``). The submitter records the positions in
each checkpoint, in the same Kafka transaction as the job's progress, and a resumed job
rewinds its files to them before it reads the answers after that checkpoint again: so a
file holds every row once, whenever the submitter died.

Parquet has its footer at the end, so a Parquet file cannot grow row by row and survive a
crash. Its rows go to a JSON Lines spool beside it (``.<name>.spool.jsonl``) as they
arrive, and ``close`` writes the Parquet file from the spool, a chunk at a time, then
deletes the spool.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson

from streamdag.errors import ConfigError

__all__ = ["JsonLinesSink", "ParquetSink", "Sink", "open_sink", "write_parquet"]

_CHUNK_ROWS = 10_000


class Sink(Protocol):
    path: Path

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (buffered)."""

    def position(self) -> int:
        """Flush and sync; the bytes now durable. Called at every checkpoint."""

    def rewind(self, position: int) -> None:
        """Cut the file back to ``position``, a value ``position`` returned before; called
        once, when a job resumes, before any write."""

    def close(self, *, complete: bool) -> None:
        """Flush and close; ``complete``: the job is done (Parquet is written then)."""


class JsonLinesSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")

    def position(self) -> int:
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell()

    def rewind(self, position: int) -> None:
        self._file.flush()
        size = self._file.seek(0, os.SEEK_END)
        if size < position:
            raise ConfigError(
                f"{self.path} holds {size:,} bytes, but the job wrote {position:,} by its "
                "last checkpoint: resume the job where its files are"
            )
        self._file.truncate(position)
        self._file.seek(position)

    def close(self, *, complete: bool) -> None:
        self.position()
        self._file.close()


class ParquetSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.spool = JsonLinesSink(path.with_name(f".{path.name}.spool.jsonl"))

    def write(self, row: dict[str, Any]) -> None:
        self.spool.write(row)

    def position(self) -> int:
        return self.spool.position()

    def rewind(self, position: int) -> None:
        self.spool.rewind(position)

    def close(self, *, complete: bool) -> None:
        self.spool.close(complete=complete)
        if complete:
            write_parquet(self.path, lambda: _spooled(self.spool.path))
            self.spool.path.unlink()


def _spooled(path: Path) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    with path.open("rb") as lines:
        for line in lines:
            chunk.append(orjson.loads(line))
            if len(chunk) >= _CHUNK_ROWS:
                yield chunk
                chunk = []
    yield chunk


def write_parquet(path: Path, chunks: Callable[[], Iterator[list[dict[str, Any]]]]) -> None:
    """Write row chunks as one Parquet file, one row group a chunk: written aside and
    renamed, so the file is there whole or not at all. ``chunks`` is read twice: first
    for the columns and types of every row (steps of one pipeline may answer with
    different tensors), then to write them; a column missing from a row is null."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [_schema(pa, chunk) for chunk in chunks() if chunk]
    schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else None
    part = path.with_name(f".{path.name}.part")
    if schema is None:
        pq.write_table(pa.table({"id": pa.array([], pa.string())}), part)
    else:
        with pq.ParquetWriter(part, schema) as writer:
            for chunk in chunks():
                if chunk:
                    writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    part.replace(path)


def _schema(pa: Any, chunk: list[dict[str, Any]]) -> Any:
    """The columns and types of every row of ``chunk`` (Arrow takes a list's columns
    from its first row)."""
    names = list(dict.fromkeys(name for row in chunk for name in row))
    return pa.Table.from_pylist([{n: row.get(n) for n in names} for row in chunk]).schema


def open_sink(path: Path) -> Sink:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return ParquetSink(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return JsonLinesSink(path)
    raise ConfigError(
        f"output {path}: unknown format {suffix or '(no extension)'}; use .jsonl or .parquet"
    )


def finish_parquet(path: Path) -> None:
    """Write a Parquet file whose job ended before its spool was turned into it."""
    if path.suffix.lower() in (".parquet", ".pq"):
        spool = path.with_name(f".{path.name}.spool.jsonl")
        if spool.exists():
            ParquetSink(path).close(complete=True)
