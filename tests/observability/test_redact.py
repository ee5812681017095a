"""Credentials in headers are shown as ``[redacted]`` by every view, and kept as they are
for replays; no broker needed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

import streamdag.observability.redact as redact
from streamdag.kafka.headers import ErrorInfo
from streamdag.observability.errors_view import Failure, replay_headers
from streamdag.observability.inspect import Hop, Trace
from streamdag.observability.records import view_record
from streamdag.observability.redact import REDACTED, is_sensitive, redact_headers
from streamdag.observability.render import format_records, format_trace
from streamdag.observability.scan import Record
from streamdag.protocol import encode_request
from streamdag.settings import get_settings

HEADERS = [
    ("x-request-id", b"r1"),
    ("x-tenant", b"acme"),
    ("x-api-key", b"s3cret"),
    ("x-auth-token", b"tok-123"),
    ("x-client-secret", b"hush"),
    ("x-db-password", b"pw"),
    ("x-authorization", b"Bearer abc"),
    ("x-idempotency-key", b"idem-1"),
    ("traceparent", b"00-abc-def-01"),
    ("streamdag-request-ts", b"5"),
    ("streamdag-reply-to", b"1"),
]
SECRETS = ["s3cret", "tok-123", "hush", "pw", "Bearer abc", "idem-1"]


@pytest.fixture
def extra_patterns(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STREAMDAG_REDACT_HEADERS", "x-tenant, *REQUEST*")
    get_settings.cache_clear()
    try:
        yield
    finally:
        get_settings.cache_clear()


def test_public_names() -> None:
    assert redact.__all__ == ["DEFAULT_PATTERNS", "REDACTED", "is_sensitive", "redact_headers"]


@pytest.mark.parametrize(
    "name",
    [
        "authorization",
        "Authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "X-API-Key",
        "x-auth-token",
        "x-client-secret",
        "x-db-password",
        "x-idempotency-key",
        "x-auth",
        "x-auth-user",
        "x-credential",
        "x-aws-credentials",
        "x-passwd",
        "x-passphrase",
        "x-session-id",
        "x-hub-signature",
    ],
)
def test_credentials_are_sensitive(name: str) -> None:
    assert is_sensitive(name)


@pytest.mark.parametrize(
    "name",
    [
        "x-request-id",
        "X-Request-Id",
        "x-tenant",
        "traceparent",
        "tracestate",
        "content-type",
        "streamdag-request-ts",
        "streamdag-error",
    ],
)
def test_other_headers_are_not(name: str) -> None:
    assert not is_sensitive(name)


def test_streamdag_headers_are_never_redacted() -> None:
    # Even a pattern that matches them: the views need the request id and the stamps.
    assert not is_sensitive("x-request-id", ["*"])
    assert not is_sensitive("streamdag-key-whatever", ["*key*"])


def test_values_are_replaced_in_place() -> None:
    shown = {"x-request-id": "r1", "x-api-key": "s3cret", "x-tenant": "acme"}
    assert list(redact_headers(shown).items()) == [
        ("x-request-id", "r1"),
        ("x-api-key", REDACTED),
        ("x-tenant", "acme"),
    ]


@pytest.mark.usefixtures("extra_patterns")
def test_more_patterns_come_from_the_settings() -> None:
    shown = redact_headers({"x-tenant": "acme", "x-request-id": "r1", "x-api-key": "k"})
    assert shown == {"x-tenant": REDACTED, "x-request-id": "r1", "x-api-key": REDACTED}


def _request_record(topic: str, headers: list[tuple[str, bytes]]) -> Record:
    value = encode_request("", {"x": np.array([3])}).SerializeToString()
    return Record(topic, 0, 4, 1_800_000_000_000, b"r1", value, headers)


def test_views_show_no_credential_and_keep_them_for_replay() -> None:
    view = view_record(_request_record("streamdag.p.inputs", HEADERS), "inputs")
    assert view.request_id == "r1"
    assert view.headers["x-request-id"] == "r1"
    assert view.headers["x-tenant"] == "acme"
    assert view.headers["streamdag-request-ts"] == "5"
    assert view.headers["x-api-key"] == REDACTED
    as_json = json.dumps(view.to_dict())
    trace = Trace("p", "r1", 0, 0, (Hop(view, None),))
    text = "\n".join([*format_trace(trace), *format_records([view])])
    assert "x-api-key=[redacted]" in text and "x-tenant=acme" in text
    for secret in SECRETS:
        assert secret not in as_json and secret not in text, secret
    # The record's own headers are untouched: a replay sends them as the caller did.
    assert view.raw_headers == HEADERS
    sent = dict(replay_headers(view.raw_headers, "r1"))
    assert sent["x-api-key"] == b"s3cret" and sent["x-authorization"] == b"Bearer abc"


def test_a_failure_still_knows_when_its_request_entered() -> None:
    headers = [*HEADERS, ("streamdag-error", ErrorInfo("model_error", "boom", "s", 1).encode())]
    failure = Failure(view_record(_request_record("streamdag.p.errors", headers), "errors"))
    assert failure.request_ts_ms == 5
    assert "s3cret" not in json.dumps(failure.to_dict())
