"""`streamdag infer`: a subprocess against a real server (REST and gRPC on free ports).

The server holds the serving tests' models and, through an in-memory gateway, a pipeline
(``echo-pipe``, which echoes its inputs), so no Kafka is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from serving.conftest import running_server
from serving.conftest import write_spec as write_serving_spec
from serving.fake_gateway import PIPELINE, FakeGateway
from tls_support import Pki, make_pki

from streamdag.broker import free_port
from streamdag.cli.infer import infer as infer_command
from streamdag.cli.infer import request_body
from streamdag.errors import ConfigError
from streamdag.protocol import encode_response
from streamdag.serving import Server
from streamdag.serving.auth import Tokens
from streamdag.serving.tls import TlsFiles

# Each test runs the CLI in a process of its own: slow for `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    spec, _ = write_serving_spec(tmp_path_factory.mktemp("infer"))
    with running_server([spec], FakeGateway()) as running:
        yield running


def infer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamdag.cli.main", "infer", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def ok(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = infer(*args, env=env)
    assert done.returncode == 0, done.stderr
    body: dict[str, Any] = json.loads(done.stdout)
    return body


def rest(server: Server) -> list[str]:
    return ["--url", f"http://127.0.0.1:{server.http_port}"]


def grpc(server: Server) -> list[str]:
    return ["--grpc", f"127.0.0.1:{server.grpc_port}"]


def test_rest_shorthand_to_a_model(server: Server) -> None:
    body = ok("scale", "--data", '{"x": [[1.5, 2, 3], [4, 5, 6]]}', *rest(server))
    assert body["model_name"] == "scale"
    assert body["outputs"] == [
        {"name": "y", "shape": [2, 3], "datatype": "FP32", "data": [3, 4, 6, 8, 10, 12]}
    ]


def test_grpc_full_body_with_bytes(server: Server) -> None:
    text = {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["chest pain", "wrist"]}
    data = {"id": "r-1", "inputs": [text]}
    body = ok("upper", "--data", json.dumps(data), *grpc(server))
    assert body["id"] == "r-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["upper"]["data"] == ["CHEST PAIN", "WRIST"]
    assert outputs["length"] == {
        "name": "length",
        "shape": [2],
        "datatype": "INT32",
        "data": [10, 5],
    }


@pytest.mark.parametrize("door", [rest, grpc], ids=["rest", "grpc"])
def test_a_pipeline_by_name_with_an_id(server: Server, door: Any) -> None:
    body = ok(PIPELINE, "--data", '{"text": ["a b"]}', "--id", "req-7", *door(server))
    assert body["id"] == "req-7"
    assert body["outputs"][0]["name"] == "text"
    assert body["outputs"][0]["data"] == ["a b"]


def test_rest_full_body_from_a_file(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    x = {"name": "x", "shape": [1, 2], "datatype": "BOOL", "data": [True, False]}
    path.write_text(json.dumps({"inputs": [x]}))
    body = ok("echo", "--data", f"@{path}", *rest(server))
    assert body["outputs"] == [
        {"name": "x", "shape": [1, 2], "datatype": "BOOL", "data": [True, False]}
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "--data", '{"x": [1.5]}'], "answered 404: model nope not found"),
        (["scale", "--data", '{"x": [[1, 2, 3]]}'], "expected datatype FP32, got INT64"),
        (["boom", "--data", '{"x": [1.5]}'], "RuntimeError: the model fell over"),
        (["scale", "--data", '{"x": [[1.5], [2, 3]]}'], "--data: tensor 'x' is not rectangular"),
        (["scale", "--data", "{x}"], "--data: not valid JSON"),
    ],
)
def test_errors_are_one_line(server: Server, args: list[str], message: str) -> None:
    done = infer(*args, *rest(server))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: ")
    assert done.stderr.count("\n") == 1
    assert message in done.stderr


def test_grpc_errors_are_one_line(server: Server) -> None:
    done = infer("scale", "--data", '{"x": [[true]]}', *grpc(server))
    assert done.returncode == 1
    assert done.stderr.startswith("error: ")
    assert done.stderr.count("\n") == 1
    assert "answered INVALID_ARGUMENT: model scale: input 'x': expected datatype FP32" in (
        done.stderr
    )


def test_no_server_is_an_error() -> None:
    done = infer("scale", "--data", '{"x": [1.5]}', "--url", f"127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot reach http://127.0.0.1:")


# The shorthand, without a server ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "datatype", "shape", "data"),
    [
        ([[1.5, 2], [3, 4]], "FP32", [2, 2], [1.5, 2, 3, 4]),
        ([1, 2, 3], "INT64", [3], [1, 2, 3]),
        (["a", "b"], "BYTES", [2], ["a", "b"]),
        ([[True], [False]], "BOOL", [2, 1], [True, False]),
        ([], "FP32", [0], []),
        (2.5, "FP32", [], [2.5]),
    ],
)
def test_shorthand_datatype_and_shape(
    value: Any, datatype: str, shape: list[int], data: list[Any]
) -> None:
    body = request_body(json.dumps({"t": value}))
    assert body == {"inputs": [{"name": "t", "shape": shape, "datatype": datatype, "data": data}]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"t": [1, "a"]}', "holds numbers, strings"),
        ('{"t": [true, 1]}', "holds booleans, numbers"),
        ('{"t": [null]}', "holds nulls"),
        ('{"t": [[1], 2]}', "not rectangular"),
        ("[1, 2]", "expected a JSON object"),
        ("@/nonexistent/request.json", "cannot read /nonexistent/request.json"),
    ],
)
def test_shorthand_problems(data: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^--data: ") as info:
        request_body(data)
    assert message in str(info.value)


def test_a_full_body_is_kept_and_the_id_set() -> None:
    x = {"name": "x", "shape": [1], "datatype": "INT8", "data": [1]}
    full = {"parameters": {"p": 1}, "inputs": [x]}
    assert request_body(json.dumps(full), "id-1") == {**full, "id": "id-1"}


@pytest.mark.parametrize(
    ("args", "target"),
    [
        (["--grpc", "--data", '{"x": [1.5]}'], "127.0.0.1:8081"),
        (["--data", '{"x": [1.5]}', "--grpc"], "127.0.0.1:8081"),
        (["--grpc", "10.0.0.7:9001", "--data", '{"x": [1.5]}'], "10.0.0.7:9001"),
    ],
    ids=["alone-first", "alone-last", "with-address"],
)
def test_grpc_alone_means_the_serve_default_port(
    monkeypatch: pytest.MonkeyPatch, args: list[str], target: str
) -> None:
    """``--grpc`` with no address (as in ``infer P --grpc --data ...``) goes to the port
    ``streamdag serve`` opens by default, and never swallows the next option."""
    opened: list[tuple[str, str]] = []

    class Answering:
        def infer(self, request: Any, timeout: float) -> Any:
            return encode_response("scale", {"y": np.array([3.0], dtype=np.float32)})

        def close(self) -> None:
            pass

    def open_client(protocol: str, url: str, auth: Any = None) -> Answering:
        opened.append((protocol, url))
        return Answering()

    monkeypatch.setattr("streamdag.client._client.open_client", open_client)
    done = CliRunner().invoke(infer_command, ["scale", *args])
    assert done.exit_code == 0, done.output
    assert opened == [("grpc", target)]
    assert json.loads(done.output)["outputs"][0]["data"] == [3.0]


# A server with tokens and mutual TLS -------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Server]:
    spec, _ = write_serving_spec(tmp_path_factory.mktemp("secured"))
    tls = TlsFiles(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca)
    tokens = Tokens({"cli": "cli-token-1"})
    with running_server([spec], FakeGateway(), auth_tokens=tokens, tls=tls) as running:
        yield running


def client_files(pki: Pki) -> list[str]:
    return ["--cacert", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key)]


@pytest.mark.parametrize("door", ["rest", "grpc"])
def test_token_and_tls_files_on_both_doors(secured: Server, pki: Pki, door: str) -> None:
    where = (
        ["--url", f"https://127.0.0.1:{secured.http_port}"]
        if door == "rest"
        else ["--grpc", f"127.0.0.1:{secured.grpc_port}"]
    )
    args = ["scale", "--data", '{"x": [[1.5, 2, 3]]}', *where, *client_files(pki)]
    body = ok(*args, "--token", "cli-token-1")
    assert body["outputs"][0]["data"] == [3, 4, 6]
    assert ok(*args, env={"STREAMDAG_TOKEN": "cli-token-1"})["outputs"][0]["data"] == [3, 4, 6]
    refused = infer(*args)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "UNAUTHENTICATED" in refused.stderr or "answered 401" in refused.stderr
    assert "(give a token: --token or STREAMDAG_TOKEN)" in refused.stderr


def test_tls_files_make_an_address_without_scheme_https(secured: Server, pki: Pki) -> None:
    body = ok(
        "scale",
        "--data",
        '{"x": [[1, 2, 3.5]]}',
        "--url",
        f"127.0.0.1:{secured.http_port}",
        "--token",
        "cli-token-1",
        *client_files(pki),
    )
    assert body["outputs"][0]["data"] == [2, 4, 7]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["--cacert", "ca"], "error: cannot reach https://127.0.0.1:"),
        (["--cacert", "ca", "--cert", "client_cert"], "go together (--cert, --key)"),
        (["--cacert", "ca", "--url", "http://127.0.0.1:1"], "TLS files go with an https:// URL"),
    ],
)
def test_tls_problems_are_one_line(
    secured: Server, pki: Pki, files: list[str], message: str
) -> None:
    args = [getattr(pki, a) if hasattr(pki, a) else a for a in files]
    done = infer(
        "scale",
        "--data",
        '{"x": [[1.5, 2, 3]]}',
        "--url",
        f"https://127.0.0.1:{secured.http_port}",
        "--token",
        "cli-token-1",
        *map(str, args),
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: ")
    assert done.stderr.count("\n") == 1
    assert message in done.stderr
