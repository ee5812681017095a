"""How a request becomes a record of a pipeline's inputs topic, for every writer of one.

The gateway (one request per call) and the bulk submitter (one request per row) write the
same records: key = request id, headers ``x-request-id``, ``streamdag-request-ts``,
``streamdag-call`` and, for a waiting gateway, ``streamdag-reply-to``; a value too large
for a record goes to the payload store and the record carries the stub and
``streamdag-payload`` (docs/architecture.md, "Payloads of any size").
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from streamdag.kafka import headers as h
from streamdag.payloads import PayloadStore

__all__ = ["must_check_in", "request_headers"]

# What a record holds besides its value and the caller's headers, with room to spare.
_FRAMING_BYTES = 1024


def must_check_in(
    value: bytes, headers: Mapping[str, str], payloads: PayloadStore | None, max_record_bytes: int
) -> bool:
    """Whether ``value`` goes to ``payloads`` instead of the record: only with a store, and
    only when the record would pass the store's inline limit or the producer's."""
    if payloads is None:
        return False
    size = len(value) + _FRAMING_BYTES + sum(len(k) + len(v) for k, v in headers.items())
    return size > min(payloads.inline_max_bytes, max_record_bytes)


def request_headers(
    request_id: str,
    headers: Mapping[str, str],
    *,
    call: str,
    reply_to: int | None = None,
    payload: bytes | None = None,
) -> list[tuple[str, str | bytes | None]]:
    """The headers of a request record: the caller's ``x-*``, ``traceparent`` and
    ``streamdag-caller``, then the request id, the time, the call token, the reply
    partition (only for a caller that waits on one) and the claim check's header."""
    # The request id is written once, from the request itself.
    out: list[tuple[str, str | bytes | None]] = [
        (k, v.encode())
        for k, v in headers.items()
        if (k.startswith("x-") and k != h.REQUEST_ID) or k in (h.TRACEPARENT, h.CALLER)
    ]
    out += [
        (h.REQUEST_ID, request_id.encode()),
        (h.REQUEST_TS, str(int(time.time() * 1000)).encode()),
        (h.CALL, call.encode()),
    ]
    if reply_to is not None:
        out.append((h.REPLY_TO, str(reply_to).encode()))
    if payload is not None:
        out.append((h.PAYLOAD, payload))
    return out
