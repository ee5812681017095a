"""A command imports what it uses: ``streamdag run`` (a worker, whose start is part of
every scale-up and restart) loads neither the web and gRPC servers nor the runtimes its
pipeline does not name, and every command is still listed and runs."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from streamdag.cli.main import cli

HEAVY = ["fastapi", "uvicorn", "grpc", "httpx", "onnxruntime", "fsspec", "opentelemetry.sdk"]


def test_a_worker_command_loads_no_server_and_no_unused_runtime() -> None:
    code = (
        "import sys\n"
        "from streamdag.cli.main import cli\n"
        "cli.get_command(None, 'run')\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


def test_every_command_is_listed_and_has_its_help() -> None:
    runner = CliRunner()
    listing = runner.invoke(cli, ["--help"])
    assert listing.exit_code == 0
    commands = ["broker", "topics", "run", "demo", "serve", "infer", "inspect", "errors"]
    for name in [*commands, "payloads"]:
        assert f"\n  {name} " in listing.output
        helped = runner.invoke(cli, [name, "--help"])
        assert helped.exit_code == 0, helped.output
        assert "Usage: " in helped.output


def test_an_unknown_command_is_refused_by_name() -> None:
    result = CliRunner().invoke(cli, ["serv"])
    assert result.exit_code == 2
    assert "No such command 'serv'" in result.output
