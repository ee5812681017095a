"""Bulk jobs: a dataset through a pipeline, resumable, with files out.

``submit(spec, rows)`` writes one request per row straight to the pipeline's inputs
topic and yields each row's ``BulkResult`` as it comes; ``streamdag submit`` is built on
it, with sources (``sources``) and sinks (``sinks``). The job's progress is kept in the
pipeline's compacted ``jobs`` topic (``state``), in the same Kafka transaction as the
rows it sent (``submitter``), so a job killed at any point resumes exactly once per row.
"""

from __future__ import annotations

import glob
import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from streamdag.bulk.rows import BulkResult, RowEncoder, error_row, result_row
from streamdag.bulk.sinks import Sink, open_sink
from streamdag.bulk.sources import SourceRow, count_rows, open_source, rows_of
from streamdag.bulk.state import JobState, jobs_topic, read_jobs
from streamdag.bulk.submitter import DEFAULT_MAX_IN_FLIGHT, Journal, Submitter
from streamdag.kafka import KafkaConnection
from streamdag.payloads import PayloadStore
from streamdag.pipeline import PipelineSpec, compile_plan, load_spec

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "BulkResult",
    "JobState",
    "Journal",
    "RowEncoder",
    "Sink",
    "SourceRow",
    "Submitter",
    "count_rows",
    "default_job_name",
    "error_row",
    "jobs_topic",
    "open_sink",
    "open_source",
    "read_jobs",
    "result_row",
    "rows_of",
    "submit",
]


def default_job_name(source: str, pipeline: str) -> str:
    """A job's name from its input and pipeline: the same command resumes the same job."""
    digest = hashlib.sha256(f"{Path(source).resolve()}|{pipeline}".encode()).hexdigest()
    plain = [part for part in Path(source).parts if not glob.has_magic(part)]
    stem = Path(*plain).stem if plain else "input"
    return f"{stem}-{digest[:8]}"


def submit(
    spec: PipelineSpec | str | Path,
    rows: Iterable[Mapping[str, Any]] | Iterable[SourceRow] | Any,
    *,
    kafka: KafkaConnection | str | None = None,
    job: str | None = None,
    id_column: str | None = None,
    mapping: Mapping[str, str] | None = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    payloads: PayloadStore | None = None,
    journal: Journal | None = None,
    on_progress: Callable[[JobState], None] | None = None,
    source: str = "",
    total: int | None = None,
) -> Iterator[BulkResult]:
    """Send ``rows`` (dicts, a pandas DataFrame, or ``SourceRow``) through the pipeline of
    ``spec`` and yield every row's ``BulkResult`` as it arrives: its outputs, or its error
    (a row that does not fit the pipeline's declared inputs is refused before it is sent,
    with code ``invalid_argument``).

    With ``job`` the run resumes that job if it ran before: rows it already sent are
    skipped and only answers not yet checkpointed are yielded again; pass a ``journal``
    to make the files the answers go to hold each once. Without ``job`` every call is a
    new job. ``kafka`` defaults to the settings' bootstrap servers.
    """
    if not isinstance(spec, PipelineSpec):
        spec = load_spec(Path(spec))
    plan = compile_plan(spec)
    connection = KafkaConnection.of(kafka) if kafka is not None else KafkaConnection.from_settings()
    submitter = Submitter(
        plan,
        connection,
        job=job or f"api-{uuid.uuid4().hex[:12]}",
        max_in_flight=max_in_flight,
        mapping=dict(mapping or {}),
        payloads=payloads,
        journal=journal,
        on_progress=on_progress,
        source=source,
        total=total,
    )
    return submitter.results(_source_rows(rows, id_column))


def _source_rows(rows: Any, id_column: str | None) -> Iterator[SourceRow]:
    iterator = iter(rows) if not hasattr(rows, "columns") else None
    if iterator is None:
        yield from rows_of(rows, id_column)
        return
    first = next(iterator, None)
    if first is None:
        return
    if isinstance(first, SourceRow):
        yield first
        yield from iterator
        return
    yield from rows_of(_chain(first, iterator), id_column)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
