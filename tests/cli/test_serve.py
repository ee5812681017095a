"""`streamdag serve`'s options reach the server (the server itself: tests/serving)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import streamdag.cli.serve as serve_cli
from streamdag.broker.ports import free_port
from streamdag.cli.main import cli, main
from streamdag.serving.tls import TlsFiles

SPEC = """
name: serve-cli
models:
  m: {runtime: python, handler: "os:getcwd"}
steps:
  - {name: s, model: m}
"""


@pytest.mark.parametrize(("flag", "passed"), [([], None), (["--allow-repository-changes"], True)])
def test_repository_changes_only_with_the_flag(
    flag: list[str],
    passed: bool | None,
    write_spec: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    async def fake_serve(specs: list[Any], **options: Any) -> None:
        seen.update(options)

    monkeypatch.setattr(serve_cli, "run_server", fake_serve)
    result = CliRunner().invoke(
        cli, ["serve", str(write_spec(SPEC)), *flag, "--bootstrap", "127.0.0.1:1"]
    )
    assert result.exit_code == 0, result.output
    # Without the flag the setting decides (STREAMDAG_SERVE_ALLOW_REPOSITORY_CHANGES).
    assert seen["allow_repository_changes"] is passed


def test_token_and_tls_options_reach_the_server(
    write_spec: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    async def fake_serve(specs: list[Any], **options: Any) -> None:
        seen.update(options)

    files = {name: tmp_path / f"{name}.pem" for name in ("tokens", "cert", "key", "ca")}
    for path in files.values():
        path.write_text("")
    monkeypatch.setattr(serve_cli, "run_server", fake_serve)
    result = CliRunner().invoke(
        cli,
        [
            "serve",
            str(write_spec(SPEC)),
            "--bootstrap",
            "127.0.0.1:1",
            "--auth-tokens",
            str(files["tokens"]),
            "--open-metrics",
            "--open-ui",
            "--tls-cert",
            str(files["cert"]),
            "--tls-key",
            str(files["key"]),
            "--tls-client-ca",
            str(files["ca"]),
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen["auth_tokens"] == files["tokens"]
    assert seen["open_metrics"] is True
    assert seen["open_ui"] is True
    assert seen["tls"] == TlsFiles(cert=files["cert"], key=files["key"], client_ca=files["ca"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert"], "error: --tls-cert needs --tls-key too"),
        (["--tls-key"], "error: --tls-key needs --tls-cert too"),
        (["--tls-client-ca"], "error: --tls-client-ca needs --tls-cert and --tls-key"),
    ],
)
def test_a_tls_file_alone_is_a_one_line_error(
    flags: list[str],
    message: str,
    write_spec: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pem = tmp_path / "file.pem"
    pem.write_text("")
    code = main(["serve", str(write_spec(SPEC)), flags[0], str(pem), "--bootstrap", "127.0.0.1:1"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1


MODELS_SPEC = """
name: serve-models
models:
  double: {runtime: python, handler: "serve_models_only:double", outputs: [y]}
steps:
  - {name: s, model: double}
"""


def _serve(spec: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamdag.cli.main", "serve", str(spec), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _write(write_spec: Callable[[str], Path]) -> Path:
    spec = write_spec(MODELS_SPEC)
    (spec.parent / "serve_models_only.py").write_text(
        "def double(inputs):\n    return {'y': inputs['x'] * 2}\n"
    )
    return spec


def test_models_only_serves_the_models_without_kafka(write_spec: Callable[[str], Path]) -> None:
    spec = _write(write_spec)
    http, grpc_port = free_port(), free_port()
    no_kafka = ["--bootstrap", "127.0.0.1:1", "--http-port", str(http), "--grpc-port"]
    server = _serve(spec, "--models-only", *no_kafka, str(grpc_port))
    try:
        url = f"http://127.0.0.1:{http}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[1]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        body = {"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [1, 2]}]}
        answer = httpx.post(f"{url}/v2/models/double/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [2, 4]
        # The pipeline is not served: it would need Kafka.
        assert httpx.get(f"{url}/v2/models/serve-models", timeout=5).status_code == 404
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_without_kafka_the_error_names_models_only(write_spec: Callable[[str], Path]) -> None:
    spec = _write(write_spec)
    ports = ["--http-port", str(free_port()), "--grpc-port", str(free_port())]
    server = _serve(spec, "--bootstrap", "127.0.0.1:1", *ports)
    _, err = server.communicate(timeout=120)
    assert server.returncode == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: cannot reach Kafka at 127.0.0.1:1")
    assert last.endswith("`streamdag serve --models-only` serves the specs' models without Kafka")
