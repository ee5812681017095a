"""`streamdag serve`'s options reach the server (the server itself: tests/serving)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import streamdag.cli.serve as serve_cli
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
