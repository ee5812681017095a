"""`streamdag serve`'s options reach the server (the server itself: tests/serving)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import streamdag.cli.serve as serve_cli
from streamdag.cli.main import cli

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
