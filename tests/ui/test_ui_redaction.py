"""Credentials a caller sent with a request never show: not in the web view's API, not in
`streamdag inspect` or `streamdag errors` (text or JSON), though Kafka keeps them."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from kafka_support import run_pipeline

from streamdag.observability.inspect import trace_request
from streamdag.pipeline import compile_plan

from .ui_support import ui_server, write_pipeline

pytestmark = pytest.mark.kafka

CREDENTIALS = {
    "x-api-key": "s3cret",
    "authorization": "Bearer abc",
    "x-auth-token": "tok-7f3a9",
    # Names without "authorization", "token" or "password" in them.
    "x-auth": "auth-c0ffee",
    "x-credential": "cred-b4d",
    "x-passwd": "pw-f00d",
}
SECRETS = ["s3cret", "Bearer abc", "tok-7f3a9", "auth-c0ffee", "cred-b4d", "pw-f00d"]


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "streamdag.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_no_view_shows_a_credential(
    bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    spec = write_pipeline(tmp_path, unique_name("ui"))
    path = str(tmp_path / "pipeline.yaml")
    ok, failed = (f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("ok", "failed"))
    with run_pipeline(spec, bootstrap), ui_server(spec, bootstrap) as server:
        url = f"http://127.0.0.1:{server.http_port}"
        for rid, x in ((ok, 1.0), (failed, 13.0)):  # clean fails on 13
            body = {
                "id": rid,
                "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [x]}],
            }
            headers = {**CREDENTIALS, "x-tenant": "acme"}
            response = httpx.post(
                f"{url}/v2/pipelines/{spec.name}/infer", json=body, headers=headers, timeout=30
            )
            assert response.status_code == (200 if rid == ok else 500), response.text
        api = f"{url}/ui/api/pipelines/{spec.name}"
        shown = {
            "search ok": httpx.get(f"{api}/requests/{ok}", timeout=60),
            "search failed": httpx.get(f"{api}/requests/{failed}", timeout=60),
            "errors": httpx.get(f"{api}/errors", timeout=60),
            "stats": httpx.get(f"{api}/stats", timeout=60),
        }
        for name, response in shown.items():
            assert response.status_code == 200, (name, response.text)
        b = ["--bootstrap", bootstrap]
        outputs = {
            "inspect": cli("inspect", path, "--request-id", ok, *b),
            "inspect --json": cli("inspect", path, "--request-id", failed, "--json", *b),
            "inspect --last": cli("inspect", path, "--last", "5", "--topic", "inputs", *b),
            "errors": cli("errors", path, *b),
            "errors --json": cli("errors", path, "--json", *b),
        }
        outputs.update({f"web view {name}": r.text for name, r in shown.items()})
        # The records in Kafka are unchanged: the caller's key went through the pipeline.
        stored = trace_request(compile_plan(spec), bootstrap, ok).hops[0].record.raw_headers
    assert ("x-api-key", b"s3cret") in stored
    for name, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, (name, secret)
    # The headers are there, their values hidden; the others are shown as they are.
    hops = shown["search ok"].json()["hops"]
    assert hops[0]["headers"]["x-api-key"] == "[redacted]"
    for name in ("x-auth-token", "x-auth", "x-credential", "x-passwd"):
        assert hops[0]["headers"][name] == "[redacted]", name
    assert hops[0]["headers"]["x-tenant"] == "acme"
    assert hops[0]["headers"]["x-request-id"] == ok
    [latest] = shown["errors"].json()["latest"]
    assert latest["request_id"] == failed and latest["headers"]["x-api-key"] == "[redacted]"
    assert "x-api-key=[redacted]" in outputs["inspect"]
    assert "x-tenant=acme" in outputs["inspect"]
