"""Header values that are never shown: credentials a caller forwarded with a request.

A request's ``x-*`` headers travel with it through every topic, so a caller's API key or
bearer token is in Kafka next to the request. Everything that shows records to people or
scripts (``streamdag inspect``, ``streamdag errors``, the web view) shows them through
``redact_headers``, which replaces the value of every header whose name matches a
sensitive pattern with ``[redacted]``. Only what is shown changes: the records in Kafka
keep their headers, and ``streamdag errors --replay`` re-sends them as they were.

A pattern is a shell-style glob (``*`` any run of characters, ``?`` one) matched against
the whole header name, case-insensitively. ``DEFAULT_PATTERNS`` names the usual
credentials; ``STREAMDAG_REDACT_HEADERS`` adds more. streamdag's own headers
(``x-request-id`` and ``streamdag-*``) are never redacted, whatever the patterns say: they
hold no secret and the views need them (the request id, when it entered the pipeline,
where its reply went). The request id shown beside a record is its Kafka key, not a
header, and is shown as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from streamdag.kafka import headers as h
from streamdag.settings import get_settings

__all__ = ["DEFAULT_PATTERNS", "REDACTED", "is_sensitive", "redact_headers"]

REDACTED = "[redacted]"
DEFAULT_PATTERNS: tuple[str, ...] = (
    "*auth*",  # authorization, proxy-authorization, x-auth, x-auth-user
    "*cookie*",
    "x-api-key",  # also matched by *key*; named because it is the common one
    "*token*",
    "*secret*",
    "*key*",
    "*pass*",  # password, passwd, passphrase, x-pass
    "*cred*",  # credential(s), x-cred
    "*session*",
    "*signature*",
)


def is_sensitive(name: str, patterns: Iterable[str] = DEFAULT_PATTERNS) -> bool:
    """Whether header ``name`` matches one of ``patterns`` and is not streamdag's own."""
    lowered = name.lower()
    if lowered == h.REQUEST_ID or lowered.startswith("streamdag-"):
        return False
    return any(fnmatchcase(lowered, p.lower()) for p in patterns)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` in the same order, the values of sensitive ones replaced by
    ``[redacted]``: the default patterns plus ``STREAMDAG_REDACT_HEADERS``."""
    patterns = (*DEFAULT_PATTERNS, *get_settings().redact_headers)
    return {k: REDACTED if is_sensitive(k, patterns) else v for k, v in headers.items()}
