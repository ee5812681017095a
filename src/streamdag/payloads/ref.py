"""What a record that holds a stub says about its real value: header ``streamdag-payload``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from streamdag.errors import PayloadLost
from streamdag.protocol import encode_response

__all__ = ["PayloadRef", "stub_value"]


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
            data = json.loads(raw)
            return cls(url=str(data["url"]), size=int(data["size"]), sha256=str(data["sha256"]))
        except (ValueError, KeyError, TypeError):
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            raise PayloadLost(f"header streamdag-payload names no object: {text[:200]!r}") from None


def stub_value(request_id: str, ref: PayloadRef) -> bytes:
    """The value a record carries in place of its payload: an OIP message without tensors
    whose parameter ``streamdag_payload`` is the object's URL. Fields 1-4 (model name,
    version, id, parameters) are laid out alike in ``ModelInferRequest`` and
    ``ModelInferResponse``, so the stub parses as either, for readers that do not resolve
    it."""
    message = encode_response("", {}, id=request_id, parameters={"streamdag_payload": ref.url})
    return bytes(message.SerializeToString())
