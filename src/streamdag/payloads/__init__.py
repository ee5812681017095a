"""Payloads of any size: the claim check.

A record whose serialized value would exceed the store's ``inline_max_bytes`` travels as
a small stub: its value goes to a payload store reached through fsspec (``file://``,
``s3://``, ``gs://`` with the matching optional package), and the record carries header
``streamdag-payload`` with the object's URL, size and SHA-256 (``PayloadRef``). Whoever
reads the record (a worker, the gateway, ``inspect``, ``errors --replay``) resolves the
stub with ``PayloadStore.claim``; a missing object or one whose bytes do not match is
``PayloadLost``, never a hang. Objects are kept for a retention no shorter than that of
the topics whose records name them (``retention.py``).
"""

from streamdag.payloads.ref import PayloadRef, stub_value
from streamdag.payloads.retention import effective_retention_s, start_sweeper
from streamdag.payloads.store import DEFAULT_INLINE_MAX_BYTES, PayloadStore, store_from_settings

__all__ = [
    "DEFAULT_INLINE_MAX_BYTES",
    "PayloadRef",
    "PayloadStore",
    "effective_retention_s",
    "start_sweeper",
    "store_from_settings",
    "stub_value",
]
