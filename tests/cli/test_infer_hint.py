"""`streamdag infer` against an address where nothing listens hints to start `serve`; a
server that answers gets no such hint."""

from __future__ import annotations

import pytest

from streamdag.broker.ports import free_port
from streamdag.cli.main import main
from streamdag.cli.options import NO_SERVER_HINT, with_serve_hint
from streamdag.errors import Unavailable


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_no_server_hints_to_start_serve(transport: str, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # free: nothing listens there
    where = (
        ["--url", f"http://127.0.0.1:{port}"]
        if transport == "rest"
        else ["--grpc", f"127.0.0.1:{port}"]
    )
    code = main(["infer", "m", *where, "--data", '{"x": [1]}', "--timeout", "5"])
    assert code == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and line.endswith(NO_SERVER_HINT)
    assert str(port) in line


def test_an_answering_server_gets_no_hint() -> None:
    busy = Unavailable("pipeline p is not ready: step s has no worker")
    assert with_serve_hint(busy) is busy
