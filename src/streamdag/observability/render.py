"""Plain-text forms of traces, records and failures, for ``streamdag inspect`` and
``streamdag errors`` (their ``--json`` forms are the objects' ``to_dict``).

A tensor is shown by its datatype, shape and digest; its first values only with
``values`` (``--show-values``): in a medical pipeline they are patient text."""

from __future__ import annotations

import json
from collections.abc import Sequence

from streamdag.observability.errors_view import Failure, ReplayResult
from streamdag.observability.inspect import Trace
from streamdag.observability.records import RecordView, TensorSummary
from streamdag.observability.scan import format_time

__all__ = ["format_failures", "format_records", "format_replay", "format_trace"]

# Shown on their own lines (error, source), so not repeated among the headers.
_OWN_LINES = frozenset(
    {
        "streamdag-error",
        "streamdag-source-topic",
        "streamdag-source-partition",
        "streamdag-source-offset",
    }
)


def format_trace(trace: Trace, *, values: bool = False) -> list[str]:
    """A request's path through the pipeline: one block per record, in order of time."""
    count = len(trace.hops)
    lines = [
        f"request {trace.request_id} in pipeline {trace.pipeline} (partition "
        f"{trace.partition}): {count} record{'s' if count != 1 else ''} since "
        f"{format_time(trace.since_ms)}, {trace.elapsed_ms} ms from first to last"
    ]
    width = max(len(hop.record.label) for hop in trace.hops) if trace.hops else 0
    for hop in trace.hops:
        delta = f"+{hop.since_previous_ms if hop.since_previous_ms is not None else 0} ms"
        lines += _block(hop.record, f"{delta:>10}  {hop.record.label:<{width}}", values=values)
    return lines


def format_records(records: Sequence[RecordView], *, values: bool = False) -> list[str]:
    """Records of one topic, oldest first, each with its request id."""
    width = max((len(r.label) for r in records), default=0)
    lines: list[str] = []
    for r in records:
        lines += _block(r, f"{r.label:<{width}}", f"  request {r.request_id}", values=values)
    return lines


def _block(record: RecordView, lead: str, tail: str = "", *, values: bool) -> list[str]:
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    lines = [f"{format_time(record.timestamp_ms)}  {lead}  {where}{tail}"]
    shown = [f"{k}={v}" for k, v in record.headers.items() if k not in _OWN_LINES]
    if shown:
        lines.append(f"    headers: {' '.join(shown)}")
    if record.error is not None:
        e = record.error
        kind = "error" if record.role == "errors" else "error reply"
        lines.append(
            f"    {kind}: {e.code} in step {e.step or '?'} after {e.attempts} "
            f"attempt{'s' if e.attempts != 1 else ''}: {e.message}"
        )
    if record.source is not None:
        s = record.source
        lines.append(f"    failed record: {s.topic}[{s.partition}]@{s.offset}")
    if record.skipped:
        lines.append("    skipped: the step did not run for this request")
    if record.problem is not None:
        lines.append(f"    undecodable: {record.problem}")
    lines += [f"    {_tensor(t, values=values)}" for t in record.tensors]
    return lines


def _tensor(t: TensorSummary, *, values: bool) -> str:
    if not values:
        return f"{t.name}: {t.datatype} {list(t.shape)} {t.digest}"
    head = ", ".join(_value(v) for v in t.head)
    more = ", ..." if t.size > len(t.head) else ""
    return f"{t.name}: {t.datatype} {list(t.shape)} [{head}{more}]"


def _value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def format_failures(failures: Sequence[Failure]) -> list[str]:
    """One line per failed record, oldest first, under a header line; the message of a
    replayed request's failure starts with ``[replayed]``."""
    rows = [("TIME", "STEP", "CODE", "ATTEMPTS", "REQUEST", "FAILED RECORD", "MESSAGE")]
    for f in failures:
        s = f.record.source
        rows.append(
            (
                format_time(f.record.timestamp_ms),
                f.error.step or "?",
                f.error.code,
                str(f.error.attempts),
                f.request_id,
                f"{s.topic}[{s.partition}]@{s.offset}" if s is not None else "?",
                ("[replayed] " if f.record.replayed else "") + " ".join(f.error.message.split()),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]


def format_replay(result: ReplayResult) -> list[str]:
    """What a replay did, one line per outcome (missing requests are the caller's error)."""
    n = len(result.replayed)
    lines = [
        f"replayed {n} request{'s' if n != 1 else ''} to {result.topic}"
        + (f": {', '.join(result.replayed)}" if n else "")
    ]
    if result.resubmitted:
        one = len(result.resubmitted) == 1
        lines.append(
            f"skipped {len(result.resubmitted)} request{'' if one else 's'} sent again since "
            f"{'it' if one else 'they'} failed (--force replays "
            f"{'it' if one else 'them'} anyway): {', '.join(result.resubmitted)}"
        )
    return lines
