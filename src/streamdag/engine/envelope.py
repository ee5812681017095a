"""What a step reads and writes: Kafka records <-> requests with arrays and headers.

The inputs topic holds ``ModelInferRequest`` (protobuf, or OIP JSON when the header
``content-type`` is ``application/json``); every outputs topic holds ``ModelInferResponse``
whose ``id`` is the request id. An error reply is a response without outputs that carries
the ``streamdag-error`` header.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamdag.errors import DecodeError, InvalidInput
from streamdag.kafka import headers as h
from streamdag.protocol import (
    ModelInferResponse,
    decode_request,
    decode_response,
    encode_response,
    request_from_bytes,
    request_from_json,
    response_from_bytes,
)

__all__ = [
    "Envelope",
    "OutRecord",
    "decode_record",
    "error_reply",
    "marker_record",
    "result_records",
]

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class OutRecord:
    """A record to produce; ``value`` None is a tombstone, ``partition`` None lets the
    key pick the partition."""

    topic: str
    key: str
    value: bytes | None
    headers: h.Headers
    partition: int | None = None


@dataclass
class Envelope:
    """One consumed record, decoded. ``error`` is set for an upstream error reply;
    ``problem`` is set when the record could not be decoded at all."""

    topic: str
    partition: int
    offset: int
    request_id: str
    headers: h.Headers
    value: bytes
    arrays: Arrays = field(default_factory=dict)
    error: h.ErrorInfo | None = None
    problem: InvalidInput | None = None
    request_ts_ms: int = 0

    @property
    def carried_headers(self) -> h.Headers:
        return h.passthrough(self.headers)


def _request_id(key: bytes | None, headers: h.Headers, body_id: str = "") -> str:
    if key:
        return key.decode("utf-8", errors="replace")
    return h.get_header(headers, h.REQUEST_ID) or body_id or uuid.uuid4().hex


def decode_record(msg: Any, *, is_request: bool, model_name: str = "") -> Envelope:
    """Decode a confluent-kafka message of the inputs topic (``is_request``) or of a step's
    outputs topic. Never raises: an undecodable record comes back with ``problem`` set."""
    headers: h.Headers = [(k, v) for k, v in (msg.headers() or []) if v is not None]
    value: bytes = msg.value() or b""
    key: bytes | None = msg.key()
    _, ts = msg.timestamp()
    request_ts = h.get_header(headers, h.REQUEST_TS)
    env = Envelope(
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        request_id=_request_id(key, headers),
        headers=headers,
        value=value,
        request_ts_ms=int(request_ts) if request_ts and request_ts.isdigit() else int(ts),
    )
    if env.request_ts_ms <= 0:  # confluent-kafka gives -1 for TIMESTAMP_NOT_AVAILABLE
        env.request_ts_ms = int(time.time() * 1000)
    try:
        if is_request:
            if (h.get_header(headers, h.CONTENT_TYPE) or "").startswith("application/json"):
                request = request_from_json(value, model_name=model_name)
            else:
                request = request_from_bytes(value)
            if not key:
                env.request_id = _request_id(None, headers, request.id)
            env.arrays = decode_request(request)
        else:
            error = h.get_header(headers, h.ERROR)
            if error is not None:
                env.error = h.ErrorInfo.decode(error)
            else:
                env.arrays = decode_response(response_from_bytes(value))
    except InvalidInput as exc:
        env.problem = exc
    except Exception as exc:  # a codec bug must not stop the partition: report the record
        env.problem = DecodeError(f"cannot decode record: {type(exc).__name__}: {exc}")
    return env


def _stamp(env: Envelope, *, pipeline: str, version: str, step: str, attempts: int) -> h.Headers:
    return [
        *[(k, v) for k, v in env.carried_headers if k not in (h.REQUEST_ID, h.REQUEST_TS)],
        (h.REQUEST_ID, env.request_id.encode()),
        (h.REQUEST_TS, str(env.request_ts_ms).encode()),
        (h.PIPELINE, pipeline.encode()),
        (h.PIPELINE_VERSION, version.encode()),
        (h.STEP, step.encode()),
        (h.ATTEMPT, str(attempts).encode()),
    ]


def result_records(
    env: Envelope,
    targets: list[tuple[str, str]],
    outputs: Arrays,
    *,
    pipeline: str,
    version: str,
    step: str,
    attempts: int,
) -> list[OutRecord]:
    """One result record per ``(topic, model_name)`` target, encoded once.

    The tensors are serialized a single time; each target's value is that message with its
    own ``model_name`` field in front, which protobuf parses as one message.
    """
    body = encode_response("", outputs, id=env.request_id, model_version=version)
    encoded = body.SerializeToString()
    headers = _stamp(env, pipeline=pipeline, version=version, step=step, attempts=attempts)
    return [
        OutRecord(topic, env.request_id, _model_name_field(name) + encoded, headers)
        for topic, name in targets
    ]


@functools.lru_cache(maxsize=256)
def _model_name_field(name: str) -> bytes:
    return ModelInferResponse(model_name=name).SerializeToString() if name else b""


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
    headers = _stamp(
        env, pipeline=pipeline, version=version, step=error.step, attempts=error.attempts
    )
    headers.append((h.ERROR, error.encode()))
    if original:
        headers += [
            ("streamdag-source-topic", env.topic.encode()),
            ("streamdag-source-partition", str(env.partition).encode()),
            ("streamdag-source-offset", str(env.offset).encode()),
        ]
        content_type = h.get_header(env.headers, h.CONTENT_TYPE)
        if content_type:
            headers.append((h.CONTENT_TYPE, content_type.encode()))
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
) -> OutRecord:
    """A record without outputs that tells downstream steps about a request: ``error``
    (an upstream step failed it; the error travels in ``streamdag-error``) or ``skip`` (no
    step on this path ran for it)."""
    headers = _stamp(env, pipeline=pipeline, version=version, step=step, attempts=0)
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
