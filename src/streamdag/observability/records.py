"""What a record of a pipeline topic says, in a form made for people and for JSON.

A ``RecordView`` is one record decoded the way the engine reads it: the inputs topic holds
requests (protobuf, or OIP JSON with ``content-type: application/json``); every outputs
topic holds responses or markers (``streamdag-error``: an error reply or error marker,
``streamdag-skipped``: the step did not run); the errors topic holds the failed record as
it arrived, with the error and its source in headers. Tensors are summarised (name,
datatype, shape, first values, a digest), never copied whole; the first values are for
``--show-values`` only, since in a medical pipeline they are patient text: ``to_dict``
and the text forms (``render.py``) leave them out unless asked, and show the digest, which
tells two values apart without showing either. The headers shown have their
credentials redacted (``redact.py``); ``raw_headers`` keeps them as they are in Kafka, for
replays, and is never shown. A stub (header ``streamdag-payload``) is shown with the
tensors of the object it names when a payload store is given. Decoding never raises: a
record that cannot be decoded is shown with ``problem`` set.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from streamdag.errors import StreamdagError
from streamdag.kafka import headers as h
from streamdag.observability.redact import redact_headers
from streamdag.observability.scan import Record, format_time
from streamdag.payloads import PayloadRef, PayloadStore
from streamdag.protocol import (
    Array,
    decode_request,
    decode_response,
    request_from_bytes,
    request_from_json,
    response_from_bytes,
)

__all__ = [
    "DIGEST_CHARS",
    "HEAD_VALUES",
    "RecordView",
    "Role",
    "Source",
    "TensorSummary",
    "entered_ms",
    "shown_headers",
    "summarise",
    "view_record",
]

Role = Literal["inputs", "step", "errors", "outputs"]
Scalar = bool | int | float | str

HEAD_VALUES = 5
DIGEST_CHARS = 12  # hex digits of sha256: enough to tell values apart, too few to guess
_SHOWN = frozenset({h.TRACEPARENT, h.TRACESTATE, h.CONTENT_TYPE, h.CALL})
SOURCE_TOPIC = "streamdag-source-topic"
SOURCE_PARTITION = "streamdag-source-partition"
SOURCE_OFFSET = "streamdag-source-offset"


@dataclass(frozen=True)
class TensorSummary:
    name: str
    datatype: str
    shape: tuple[int, ...]
    head: tuple[Scalar, ...]  # the first values, row-major
    size: int  # how many values the tensor holds
    digest: str = ""  # "sha256:" and the first hex digits of the raw contents

    def to_dict(self, *, values: bool = False) -> dict[str, Any]:
        """The summary as JSON; the first values (``head``) only with ``values``."""
        shown: dict[str, Any] = {
            "name": self.name,
            "datatype": self.datatype,
            "shape": list(self.shape),
            "size": self.size,
            "digest": self.digest,
        }
        if values:
            shown["head"] = list(self.head)
        return shown


@dataclass(frozen=True)
class Source:
    """Where a record of the errors topic failed: the record it was read from."""

    topic: str
    partition: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True)
class RecordView:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    request_id: str
    role: Role
    step: str | None  # the step whose outputs topic it is, or that wrote or failed it
    headers: dict[str, str]
    tensors: tuple[TensorSummary, ...] = ()
    error: h.ErrorInfo | None = None
    skipped: bool = False
    source: Source | None = None
    problem: str | None = None  # why the value could not be decoded
    # As in Kafka, credentials included: for replays, never shown.
    raw_headers: list[tuple[str, bytes]] = field(default_factory=list, repr=False)
    value: bytes = field(default=b"", repr=False)

    @property
    def replayed(self) -> bool:
        """Whether the record belongs to a request ``errors --replay`` sent again."""
        return h.REPLAYED in self.headers

    @property
    def label(self) -> str:
        """``inputs``, ``outputs``, ``errors`` or the step name."""
        return self.step if self.role == "step" and self.step else self.role

    def to_dict(self, *, values: bool = False) -> dict[str, Any]:
        """The record as JSON; tensors' first values only with ``values``."""
        error = self.error
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "time": format_time(self.timestamp_ms),
            "request_id": self.request_id,
            "role": self.role,
            "step": self.step,
            "headers": self.headers,
            "tensors": [t.to_dict(values=values) for t in self.tensors],
            "error": None
            if error is None
            else {
                "code": error.code,
                "message": error.message,
                "step": error.step,
                "attempts": error.attempts,
            },
            "skipped": self.skipped,
            "replayed": self.replayed,
            "source": None if self.source is None else self.source.to_dict(),
            "problem": self.problem,
        }


def shown_headers(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    """The headers worth showing: the user's ``x-*`` (``x-request-id`` first), trace
    context and ``content-type`` (how the value was read), then streamdag's own; the last
    value of each, credentials redacted (``redact.py``)."""
    shown = {
        k: v.decode("utf-8", errors="replace")
        for k, v in headers
        if k.startswith(("streamdag-", "x-")) or k in _SHOWN
    }
    return redact_headers(dict(sorted(shown.items(), key=lambda kv: _header_rank(kv[0]))))


def _header_rank(name: str) -> int:
    if name == h.REQUEST_ID:
        return 0
    if name.startswith("x-"):
        return 1
    return 3 if name.startswith("streamdag-") else 2


def summarise(name: str, array: Array, datatype: str) -> TensorSummary:
    flat = np.asarray(array).reshape(-1)
    return TensorSummary(
        name=name,
        datatype=datatype,
        shape=tuple(int(n) for n in np.shape(array)),
        head=tuple(_scalar(v) for v in flat[:HEAD_VALUES]),
        size=int(flat.size),
        digest=_digest(flat),
    )


def _digest(flat: np.ndarray[Any, Any]) -> str:
    """``sha256:`` and the first ``DIGEST_CHARS`` hex digits of a tensor's raw contents,
    row-major: its bytes for numbers, each element's 4-byte little-endian length and bytes
    for BYTES (OIP's raw layout), so equal tensors have equal digests in every view."""
    sha = hashlib.sha256()
    if flat.dtype == object or flat.dtype.kind in "SU":
        for value in flat:
            raw = value if isinstance(value, bytes) else str(value).encode()
            sha.update(len(raw).to_bytes(4, "little"))
            sha.update(raw)
    else:
        sha.update(np.ascontiguousarray(flat).tobytes())
    return f"sha256:{sha.hexdigest()[:DIGEST_CHARS]}"


def view_record(
    record: Record,
    role: Role,
    *,
    step: str | None = None,
    inputs_topic: str = "",
    payloads: PayloadStore | None = None,
) -> RecordView:
    """Decode ``record`` of a topic with ``role``; ``step`` names the step of a step's
    outputs topic; ``inputs_topic`` tells which errors-topic records hold requests; a
    stub's value is read from ``payloads``."""
    headers = record.headers
    error_header = h.get_header(headers, h.ERROR)
    error = h.ErrorInfo.decode(error_header) if error_header is not None else None
    source = _source(headers) if role == "errors" else None
    written_by = h.get_header(headers, h.STEP)
    view = RecordView(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp_ms,
        request_id=_request_id(record),
        role=role,
        step=step or (error.step if error is not None and error.step else written_by),
        headers=shown_headers(headers),
        error=error,
        skipped=h.get_header(headers, h.SKIPPED) is not None,
        source=source,
        raw_headers=headers,
        value=record.value,
    )
    is_request = role == "inputs" or (
        role == "errors" and source is not None and source.topic == inputs_topic
    )
    if role != "errors" and (error is not None or view.skipped):
        return view  # a marker or error reply: no tensors
    stub = h.get_header(headers, h.PAYLOAD)
    value = record.value
    if stub is not None:
        try:
            if payloads is None:
                ref = PayloadRef.decode(stub)
                return replace(
                    view, problem=f"{ref.size:,} bytes in {ref.url}; give --payload-store to read"
                )
            value = payloads.claim(stub)
        except StreamdagError as exc:
            return replace(view, problem=exc.message)
    tensors, problem = _tensors(value, headers, is_request=is_request)
    return replace(view, tensors=tensors, problem=problem)


def _tensors(
    value: bytes, headers: list[tuple[str, bytes]], *, is_request: bool
) -> tuple[tuple[TensorSummary, ...], str | None]:
    try:
        if is_request:
            content_type = h.get_header(headers, h.CONTENT_TYPE) or ""
            if content_type.startswith("application/json"):
                message: Any = request_from_json(value)
            else:
                message = request_from_bytes(value)
            arrays = decode_request(message)
            tensors = message.inputs
        else:
            message = response_from_bytes(value)
            arrays = decode_response(message)
            tensors = message.outputs
    except Exception as exc:  # show the record whatever is in it
        return (), f"{type(exc).__name__}: {exc}"
    datatypes = {t.name: t.datatype for t in tensors}
    return tuple(summarise(n, a, datatypes.get(n, str(a.dtype))) for n, a in arrays.items()), None


def entered_ms(record: Record) -> int:
    """When the record's request entered the pipeline: its ``streamdag-request-ts``, else
    (a request as its caller wrote it) the record's own timestamp."""
    value = h.get_header(record.headers, h.REQUEST_TS) or ""
    return int(value) if value.isdigit() else record.timestamp_ms


def _request_id(record: Record) -> str:
    if record.key:
        return record.key.decode("utf-8", errors="replace")
    return h.get_header(record.headers, h.REQUEST_ID) or ""


def _source(headers: list[tuple[str, bytes]]) -> Source | None:
    topic = h.get_header(headers, SOURCE_TOPIC)
    partition = h.get_header(headers, SOURCE_PARTITION) or ""
    offset = h.get_header(headers, SOURCE_OFFSET) or ""
    if topic is None or not partition.lstrip("-").isdigit() or not offset.lstrip("-").isdigit():
        return None
    return Source(topic, int(partition), int(offset))


def _scalar(value: Any) -> Scalar:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or infinity
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)
