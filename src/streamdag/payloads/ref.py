"""What a record that holds a stub says about its real value: header ``streamdag-payload``.

The header is written by whoever can produce to the pipeline's topics, so it is checked
as untrusted input: a value that is not exactly a URL, a whole number of bytes and a
SHA-256 names no object (``PayloadLost``, code ``data_loss``), whatever is wrong with it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from streamdag.errors import PayloadLost
from streamdag.protocol import encode_response

__all__ = ["PayloadRef", "stub_value"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class PayloadRef:
    """An object of a payload store: where it is, how many bytes, their SHA-256 (hex)."""

    url: str
    size: int
    sha256: str

    def encode(self) -> bytes:
        return json.dumps({"url": self.url, "size": self.size, "sha256": self.sha256}).encode()

    @classmethod
    def decode(cls, raw: str | bytes) -> PayloadRef:
        """Parse a header value; ``PayloadLost`` when it names no object."""
        try:
            data: Any = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
            data = None
        problem = _problem(data)
        if problem is not None:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            raise PayloadLost(
                f"header streamdag-payload names no object ({problem}): {text[:200]!r}"
            )
        return cls(url=data["url"], size=data["size"], sha256=data["sha256"])


def _problem(data: Any) -> str | None:
    """What makes ``data`` (a parsed header) name no object; None if nothing."""
    if not isinstance(data, dict):
        return "not a JSON object"
    url, size, sha256 = data.get("url"), data.get("size"), data.get("sha256")
    if not isinstance(url, str) or not url or _CONTROL.search(url):
        return "url is not a URL"
    # bool is an int to Python; 1e400 parses as a float (inf)
    if type(size) is not int or size < 0:
        return "size is not a whole number of bytes"
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        return "sha256 is not 64 hex digits"
    return None


def stub_value(request_id: str, ref: PayloadRef) -> bytes:
    """The value a record carries in place of its payload: an OIP message without tensors
    whose parameter ``streamdag_payload`` is the object's URL. Fields 1-4 (model name,
    version, id, parameters) are laid out alike in ``ModelInferRequest`` and
    ``ModelInferResponse``, so the stub parses as either, for readers that do not resolve
    it."""
    message = encode_response("", {}, id=request_id, parameters={"streamdag_payload": ref.url})
    return bytes(message.SerializeToString())
