"""What a step reads and writes: Kafka records <-> requests with arrays and headers.

The inputs topic holds ``ModelInferRequest`` (protobuf, or OIP JSON when the header
``content-type`` is ``application/json``); every outputs topic holds ``ModelInferResponse``
whose ``id`` is the request id. An error reply is a response without outputs that carries
the ``streamdag-error`` header. A record with header ``streamdag-payload`` holds a stub:
its value is in the payload store (``streamdag.payloads``), and is decoded from there;
``Envelope.value`` stays the stub, so join state and the errors topic keep it small.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamdag.errors import DecodeError, InvalidInput, PayloadLost, StreamdagError
from streamdag.kafka import headers as h
from streamdag.protocol import (
    ModelInferRequest,
    ModelInferResponse,
    encode_response,
    request_from_bytes,
    request_from_json,
    response_from_bytes,
)
from streamdag.protocol.codec import Rows, decode_requests, decode_responses, response_bytes
from streamdag.protocol.datatypes import Arrays

if TYPE_CHECKING:
    from streamdag.payloads import PayloadStore

__all__ = [
    "Envelope",
    "OutRecord",
    "batch_results",
    "decode_record",
    "decode_records",
    "error_reply",
    "marker_record",
    "record_size",
    "result_records",
]


@dataclass(slots=True)
class OutRecord:
    """A record to produce; ``value`` None is a tombstone, ``partition`` None lets the
    key pick the partition."""

    topic: str
    key: str
    value: bytes | None
    headers: h.Headers
    partition: int | None = None


# What a record costs on the wire besides its key, value and headers, with room to spare:
# a record is refused before it is produced, never by the producer or the broker.
_RECORD_OVERHEAD = 512


def record_size(record: OutRecord) -> int:
    """The bytes ``record`` counts against ``message.max.bytes``: key, value, headers."""
    size = _RECORD_OVERHEAD + len(record.key) + len(record.value or b"")
    for k, v in record.headers:
        size += len(k) + len(v)
    return size


@dataclass(slots=True)
class Envelope:
    """One consumed record, decoded. ``error`` is set for an upstream error reply;
    ``problem`` is set when the record could not be decoded at all. The tensors of a
    record decoded together with others of its batch are ``rows`` of their columns until
    someone asks for them one by one (``tensors``)."""

    topic: str
    partition: int
    offset: int
    request_id: str
    headers: h.Headers
    value: bytes
    error: h.ErrorInfo | None = None
    problem: StreamdagError | None = None
    request_ts_ms: int = 0
    rows: Rows | None = None
    _arrays: Arrays | None = None

    @property
    def arrays(self) -> Arrays:
        """The record's tensors by name (none for a marker or an undecodable record)."""
        found = self._arrays
        if found is None:
            found = self._arrays = {} if self.rows is None else self.rows.arrays()
        return found

    @arrays.setter
    def arrays(self, value: Arrays) -> None:
        self._arrays = value

    @property
    def carried_headers(self) -> h.Headers:
        return h.passthrough(self.headers)


def _request_id(key: bytes | None, headers: h.Headers, body_id: str = "") -> str:
    if key:
        return key.decode("utf-8", errors="replace")
    return h.get_header(headers, h.REQUEST_ID) or body_id or uuid.uuid4().hex


def decode_record(
    msg: Any, *, is_request: bool, model_name: str = "", payloads: PayloadStore | None = None
) -> Envelope:
    """Decode a confluent-kafka message of the inputs topic (``is_request``) or of a step's
    outputs topic. Never raises: an undecodable record comes back with ``problem`` set."""
    return decode_records(
        [msg], lambda topic: is_request, model_name=model_name, payloads=payloads
    )[0]


def decode_records(
    messages: Sequence[Any],
    is_request: Callable[[str], bool],
    *,
    model_name: str = "",
    payloads: PayloadStore | None = None,
) -> list[Envelope]:
    """``decode_record`` for a batch: ``is_request(topic)`` tells the inputs topic apart.
    The tensors of records with the same layout are decoded together (``decode_requests``),
    so the per-record cost stays small. A stub is resolved from ``payloads``; a missing
    store or object is the record's ``problem``."""
    envelopes: list[Envelope] = []
    requests: list[tuple[Envelope, ModelInferRequest]] = []
    responses: list[tuple[Envelope, ModelInferResponse]] = []
    now_ms = 0
    kinds: dict[str, bool] = {}  # topic -> is_request(topic)
    request_ts_header, content_type_header, error_header = h.REQUEST_TS, h.CONTENT_TYPE, h.ERROR
    call_header, payload_header = h.CALL, h.PAYLOAD
    for msg in messages:
        raw_headers = msg.headers()
        headers: h.Headers = (
            [(k, v) for k, v in raw_headers if v is not None] if raw_headers else []
        )
        request_ts = content_type = error = call = payload = None
        for k, v in headers:
            if k == request_ts_header:
                request_ts = v
            elif k == content_type_header:
                content_type = v
            elif k == error_header:
                error = v
            elif k == call_header:
                call = v
            elif k == payload_header:
                payload = v
        key: bytes | None = msg.key()
        topic: str = msg.topic()
        partition: int = msg.partition()
        offset: int = msg.offset()
        requested = kinds.get(topic)
        if requested is None:
            requested = kinds[topic] = is_request(topic)
        if requested and call is None:
            # Written by a client, not a gateway: the record's place names this call, the
            # same for every step that reads it and after any redelivery.
            headers.append((call_header, f"{partition}-{offset}".encode()))
        ts = int(request_ts) if request_ts and request_ts.isdigit() else msg.timestamp()[1]
        if ts <= 0:  # confluent-kafka gives -1 for TIMESTAMP_NOT_AVAILABLE
            now_ms = now_ms or int(time.time() * 1000)
            ts = now_ms
        env = Envelope(
            topic,
            partition,
            offset,
            key.decode("utf-8", errors="replace") if key else "",
            headers,
            msg.value() or b"",
            request_ts_ms=ts,
        )
        envelopes.append(env)
        try:
            value = env.value if payload is None else _claim(payloads, payload)
            if requested:
                if content_type is not None and content_type.startswith(b"application/json"):
                    request = request_from_json(value, model_name=model_name)
                else:
                    request = request_from_bytes(value)
                if not key:
                    env.request_id = _request_id(None, headers, request.id)
                requests.append((env, request))
            else:
                if not key:
                    env.request_id = _request_id(None, headers)
                if error is not None:
                    env.error = h.ErrorInfo.decode(error.decode("utf-8", errors="replace"))
                else:
                    responses.append((env, response_from_bytes(value)))
        except Exception as exc:
            _set_problem(env, exc)
    for pairs, decode in ((requests, decode_requests), (responses, decode_responses)):
        if not pairs:
            continue
        try:
            decoded = decode([message for _, message in pairs], grouped=True)
        except Exception as exc:  # a codec bug must not stop the partition
            for env, _ in pairs:
                _set_problem(env, exc)
            continue
        for (env, _), arrays in zip(pairs, decoded, strict=True):
            if isinstance(arrays, Rows):
                env.rows = arrays
            elif isinstance(arrays, InvalidInput):
                env.problem = arrays
            else:
                env.arrays = arrays
    return envelopes


def _claim(payloads: PayloadStore | None, header: bytes) -> bytes:
    if payloads is None:
        raise PayloadLost(
            f"the record's value is in a payload store ({header.decode(errors='replace')}), "
            "but this worker has none: set --payload-store or STREAMDAG_PAYLOAD_STORE"
        )
    return payloads.claim(header)


def _set_problem(env: Envelope, exc: Exception) -> None:
    if not env.request_id:
        env.request_id = _request_id(None, env.headers)
    if isinstance(exc, InvalidInput | PayloadLost):
        env.problem = exc
    else:  # a codec bug must not stop the partition: report the record
        env.problem = DecodeError(f"cannot decode record: {type(exc).__name__}: {exc}")


def _stamp(env: Envelope, *, attempts: int) -> h.Headers:
    """The headers of a record a step writes: what it carries, the request time, and
    ``streamdag-attempt`` when the model needed more than one. The request id is the
    record's key; the pipeline and the step are the topic's; a record on a topic shared by
    steps names its step (``_named``)."""
    headers = h.passthrough(env.headers, drop=_RESTAMPED)
    headers.append((h.REQUEST_TS, str(env.request_ts_ms).encode()))
    if attempts > 1:
        headers.append((h.ATTEMPT, str(attempts).encode()))
    return headers


def _named(headers: h.Headers, step: str) -> h.Headers:
    return [*headers, (h.STEP, step.encode())]


# Carried headers that every step writes afresh, or not at all (the request id is the key).
_RESTAMPED = frozenset({h.REQUEST_ID, h.REQUEST_TS})


def result_records(
    env: Envelope,
    targets: list[tuple[str, str]],
    outputs: Arrays,
    *,
    pipeline: str,
    version: str,
    step: str,
    attempts: int,
    partitions: dict[str, int] | None = None,
    model_names: tuple[str, ...] | None = None,
    own_topic: str | None = None,
    values: list[bytes] | None = None,
) -> list[OutRecord]:
    """One result record per ``(topic, model_name)`` target, encoded once; ``partitions``
    pins the records of some topics to a partition. ``model_names``: the targets' names,
    if the caller has them at hand. Records to a topic other than ``own_topic`` (the
    step's outputs) name the step in ``streamdag-step``.

    The tensors are serialized a single time for all targets (see ``response_bytes``),
    unless ``values`` holds them already, one per target.
    """
    if values is None:
        values = response_bytes(
            outputs,
            id=env.request_id,
            model_version=version,
            model_names=model_names or tuple([name for _, name in targets]),
        )
    headers = _stamp(env, attempts=attempts)
    return [
        OutRecord(
            topic,
            env.request_id,
            value,
            headers if topic == own_topic else _named(headers, step),
            partitions.get(topic) if partitions else None,
        )
        for (topic, _), value in zip(targets, values, strict=True)
    ]


def batch_results(
    members: Sequence[Envelope],
    values: Sequence[list[bytes]],
    topics: Sequence[str],
    *,
    step: str,
    own_topic: str | None,
    reply_topic: str,
    reply_partition: Callable[[h.Headers], int | None],
    max_bytes: int,
) -> tuple[list[OutRecord], list[int]]:
    """``result_records`` of a first try, for every request of a batch whose results are
    encoded already (``values[k]``: request k's value for each of ``topics``), in one
    pass. A request whose largest record could pass ``max_bytes`` is left out: the
    indexes of those come back, for the caller to write one by one (``result_records``
    and a size check). ``reply_partition`` gives the partition of ``reply_topic`` that a
    waiting gateway reads."""
    named = (h.STEP, step.encode())
    out: list[OutRecord] = []
    left: list[int] = []
    for k, (env, encoded) in enumerate(zip(members, values, strict=True)):
        headers = _stamp(env, attempts=1)
        size = _RECORD_OVERHEAD + len(env.request_id) + max(map(len, encoded), default=0)
        size += len(named[0]) + len(named[1]) + sum(len(a) + len(b) for a, b in headers)
        if size > max_bytes:
            left.append(k)
            continue
        partition = reply_partition(env.headers) if env.headers else None
        for topic, value in zip(topics, encoded, strict=True):
            out.append(
                OutRecord(
                    topic,
                    env.request_id,
                    value,
                    headers if topic == own_topic else [*headers, named],
                    partition if topic == reply_topic else None,
                )
            )
    return out, left


def error_reply(
    env: Envelope,
    topic: str,
    error: h.ErrorInfo,
    *,
    model_name: str,
    pipeline: str,
    version: str,
    original: bool = False,
) -> OutRecord:
    """An error reply (a response without outputs) or, with ``original``, the failed record
    itself as it arrived, for the errors topic. Both carry ``streamdag-error``."""
    headers = _stamp(env, attempts=error.attempts)
    headers.append((h.ERROR, error.encode()))
    if original:
        headers += [
            ("streamdag-source-topic", env.topic.encode()),
            ("streamdag-source-partition", str(env.partition).encode()),
            ("streamdag-source-offset", str(env.offset).encode()),
        ]
        for name in (h.CONTENT_TYPE, h.PAYLOAD):  # how to read the value, wherever it is
            value = h.get_header(env.headers, name)
            if value:
                headers.append((name, value.encode()))
        return OutRecord(topic, env.request_id, env.value, headers)
    response = encode_response(
        model_name,
        {},
        id=env.request_id,
        model_version=version,
        parameters={"error": error.message, "error_code": error.code, "error_step": error.step},
    )
    return OutRecord(topic, env.request_id, response.SerializeToString(), headers)


def marker_record(
    env: Envelope,
    topic: str,
    kind: str,
    *,
    model_name: str,
    pipeline: str,
    version: str,
    step: str,
    named: bool = False,
) -> OutRecord:
    """A record without outputs that tells downstream steps about a request: ``error``
    (an upstream step failed it; the error travels in ``streamdag-error``) or ``skip`` (no
    step on this path ran for it). ``named``: on a topic that does not name the step."""
    headers = _stamp(env, attempts=0)
    if named:
        headers = _named(headers, step)
    parameters: dict[str, bool | str] = {}
    if kind == "error":
        error = h.get_header(env.headers, h.ERROR)
        headers.append((h.ERROR, (error or "").encode()))
        if error:
            info = h.ErrorInfo.decode(error)
            parameters = {"error": info.message, "error_code": info.code, "error_step": info.step}
    else:
        headers.append((h.SKIPPED, b"1"))
        parameters = {"skipped": True}
    response = encode_response(
        model_name, {}, id=env.request_id, model_version=version, parameters=parameters
    )
    return OutRecord(topic, env.request_id, response.SerializeToString(), headers)
