"""Record headers of the pipeline topics (docs/architecture.md, "Topics").

Headers travel with each request through the whole graph: user ``x-*`` headers and trace
context pass through every step untouched; streamdag's own headers are re-stamped by each
step that writes a record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from streamdag.errors import InvalidInput

__all__ = [
    "ATTEMPT",
    "CALL",
    "CALLER",
    "CARRIED",
    "CONTENT_TYPE",
    "ERROR",
    "PAYLOAD",
    "PIPELINE",
    "PIPELINE_VERSION",
    "REPLAYED",
    "REPLY_TO",
    "REQUEST_ID",
    "REQUEST_TS",
    "RESERVED_PREFIX",
    "SKIPPED",
    "STEP",
    "TRACEPARENT",
    "VALUE_DROPPED",
    "ErrorInfo",
    "Headers",
    "forwarded",
    "get_header",
    "passthrough",
]

REQUEST_ID = "x-request-id"
PIPELINE = "streamdag-pipeline"
PIPELINE_VERSION = "streamdag-pipeline-version"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
ATTEMPT = "streamdag-attempt"
ERROR = "streamdag-error"
STEP = "streamdag-step"
# On a step's outputs: the step did not run for this request (its trigger did not fire).
SKIPPED = "streamdag-skipped"
CONTENT_TYPE = "content-type"
# When the request entered the pipeline (ms since the epoch): end-to-end latency.
REQUEST_TS = "streamdag-request-ts"
# Where a gateway instance waits for the reply (request-reply over Kafka).
REPLY_TO = "streamdag-reply-to"
# One call of a request: the gateway's own token, or ``<partition>-<offset>`` of the
# request on the inputs topic, stamped by the first step. A request id may be sent again;
# replies and join pieces are matched by call, so an earlier call's late answer never
# reaches a later one.
CALL = "streamdag-call"
# The name of the token a request was sent with (``streamdag serve --auth-tokens``); only
# the front door sets it, after checking the token, and every step carries it on.
CALLER = "streamdag-caller"
# On a request ``streamdag errors --replay`` sent again: the errors-topic record
# (``topic[partition]@offset``) it was replayed from. Carried by every step, so the
# request's results and failures say that they come from a replay.
REPLAYED = "streamdag-replayed"
# No caller's header may start with this: it would read as one of streamdag's own.
RESERVED_PREFIX = "x-streamdag-"

# On a record whose value is a stub: where the real value is, as JSON (url, size,
# sha256). Each record that holds a stub has its own; steps never carry it forward.
PAYLOAD = "streamdag-payload"

# On an errors-topic record whose value did not fit in a record any more: its size.
VALUE_DROPPED = "streamdag-value-dropped"

# Carried forward by every step, besides user ``x-*`` headers.
CARRIED = frozenset({TRACEPARENT, TRACESTATE, REQUEST_TS, REPLY_TO, CALL, CALLER, REPLAYED})

Headers = list[tuple[str, bytes]]


def get_header(
    headers: Sequence[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None,
    name: str,
) -> str | None:
    """The last value of header ``name`` as text, or None."""
    items = headers.items() if isinstance(headers, dict) else headers or ()
    value: str | None = None
    for key, raw in items:
        if key == name and raw is not None:
            value = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
    return value


def forwarded(
    caller_headers: Iterable[tuple[str, str]], request_id: str, caller: str | None
) -> dict[str, str]:
    """What a front door hands on with a pipeline request: the caller's ``x-*`` and
    ``traceparent`` headers, the request id, and the authenticated caller's name (never
    one the caller sent: ``streamdag-caller`` is not among the headers taken).

    A caller's header named ``x-streamdag-*`` is refused (``InvalidInput``): shown beside
    streamdag's own ``streamdag-*`` headers, ``x-streamdag-caller: admin`` would pass for
    what the door vouches for."""
    headers: dict[str, str] = {}
    for k, v in caller_headers:
        if k.lower().startswith(RESERVED_PREFIX):
            raise InvalidInput(
                f"header {k}: names starting with {RESERVED_PREFIX} are kept for streamdag; "
                "rename it"
            )
        if k.startswith("x-") or k == TRACEPARENT:
            headers[k] = v
    headers[REQUEST_ID] = request_id
    if caller is not None:
        headers[CALLER] = caller
    return headers


def passthrough(
    headers: Iterable[tuple[str, bytes | None]] | None, *, drop: frozenset[str] = frozenset()
) -> Headers:
    """The headers a step carries forward: user ``x-*`` headers and trace/reply context,
    but those named in ``drop``."""
    return [
        (k, v)
        for k, v in headers or ()
        if v is not None and (k.startswith("x-") or k in CARRIED) and k not in drop
    ]


@dataclass(frozen=True)
class ErrorInfo:
    """What ``streamdag-error`` says: the error code, its message, the step and attempts."""

    code: str
    message: str
    step: str
    attempts: int = 0

    def encode(self) -> bytes:
        return json.dumps(
            {
                "code": self.code,
                "message": self.message,
                "step": self.step,
                "attempts": self.attempts,
            }
        ).encode()

    @classmethod
    def decode(cls, raw: str) -> ErrorInfo:
        """Parse a header value; a plain-text value becomes the message of an internal error."""
        try:
            data = json.loads(raw)
            return cls(
                code=str(data["code"]),
                message=str(data["message"]),
                step=str(data.get("step", "")),
                attempts=int(data.get("attempts", 0)),
            )
        except (ValueError, KeyError, TypeError):
            return cls(code="internal", message=raw, step="")
