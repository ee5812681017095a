"""Bearer tokens at both front doors (``serve --auth-tokens``): the token file, and a real
server that refuses callers without a valid token, keeps health checks open, and names the
caller to the pipeline gateway (``streamdag-caller``), whatever header the caller forged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import httpx
import pytest
from server_support import running_server

from streamdag.errors import ConfigError, Unauthenticated
from streamdag.kafka.headers import CALLER
from streamdag.observability.records import shown_headers
from streamdag.pipeline import PipelineSpec
from streamdag.protocol import inference_pb2, inference_pb2_grpc
from streamdag.serving import Server
from streamdag.serving.auth import Caller, Tokens
from streamdag.serving.rest import BearerAuth

from .fake_gateway import PIPELINE, FakeGateway

TOKENS = {"alice": "alice-secret-1", "ci": "ci-secret-2"}
BODY = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# The token file ----------------------------------------------------------------------------


def test_a_token_file_names_its_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(
        "# who may call\n\nalice: alice-secret-1\n  ci :ci-secret-2  \n"
        "# a comment: not a token\nops: has:colons#and-hashes\n"
    )
    tokens = Tokens.from_file(path)
    assert tokens.names() == ["alice", "ci", "ops"]
    assert tokens.caller("Bearer alice-secret-1") == "alice"
    assert tokens.caller("bearer ci-secret-2") == "ci"
    assert tokens.caller("Bearer has:colons#and-hashes") == "ops"
    # Only digests are kept: the file's secrets are nowhere in the object.
    assert "alice-secret-1" not in repr(vars(tokens))


def test_a_token_marked_admin_is_an_administrators(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("alice: alice-secret-1\nops: ops-secret-9   admin\n")
    tokens = Tokens.from_file(path)
    assert tokens.caller("Bearer ops-secret-9") == "ops"  # the mark is not in the token
    assert tokens.identify("Bearer ops-secret-9") == Caller("ops", admin=True)
    assert tokens.identify("Bearer alice-secret-1") == Caller("alice", admin=False)
    with pytest.raises(ConfigError, match="administrator 'bob' has no token"):
        Tokens({"alice": "a-1"}, admins=["bob"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice: one\njust-a-token\n", "tokens:2: expected `name: token`"),
        ("ops: secret root\n", "tokens:1: the token of 'ops' holds spaces, or is followed"),
        ("alice: one\n# c\nalice: two\n", "tokens:3: name 'alice' is already used on line 1"),
        ("alice:\n", "tokens:1: the token of 'alice' is empty"),
        (": secret\n", "tokens:1: the name is empty"),
        ("bob smith: secret\n", "tokens:1: name 'bob smith': use letters, digits"),
        ("bob: two words\n", "tokens:1: the token of 'bob' holds spaces"),
        ("a: same\nb: same\n", "tokens:2: the token of 'b' is also that of 'a' (line 1)"),
        ("# nothing\n\n", "tokens: no tokens"),
    ],
)
def test_a_bad_token_file_is_one_line_naming_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Tokens.from_file(path)
    assert str(info.value).startswith(str(tmp_path) + "/")
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert "same" not in str(info.value).replace("tokens:", "")  # no token is repeated


def test_a_missing_token_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the token file .*nope: No such file"):
        Tokens.from_file(tmp_path / "nope")


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer   ", "Basic YWxpY2U6eA==", "alice-secret-1", "Bearer wrong"],
)
def test_only_a_known_bearer_token_names_a_caller(authorization: str | None) -> None:
    with pytest.raises(Unauthenticated) as info:
        Tokens(TOKENS).caller(authorization)
    assert "secret" not in str(info.value)


# A server with tokens ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineSpec, ModuleType]:
    from .conftest import write_spec

    return write_spec(tmp_path_factory.mktemp("auth"))


@pytest.fixture(scope="module")
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture(scope="module")
def server(spec: tuple[PipelineSpec, ModuleType], gateway: FakeGateway) -> Iterator[Server]:
    with running_server([spec[0]], gateway, auth_tokens=Tokens(TOKENS)) as running:
        yield running


def url(server: Server, path: str) -> str:
    return f"http://127.0.0.1:{server.http_port}{path}"


def rest_infer(server: Server, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url(server, "/v2/models/scale/infer"), json=BODY, headers=headers)


def test_rest_needs_a_valid_token(server: Server) -> None:
    for headers in ({}, bearer("wrong"), {"authorization": "Basic YWxpY2U6YWxpY2Utc2VjcmV0LTE="}):
        refused = rest_infer(server, headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["error"]
    answered = rest_infer(server, bearer("alice-secret-1"))
    assert answered.status_code == 200
    assert answered.json()["outputs"][0]["data"] == [2, 4, 6]


@pytest.mark.parametrize(
    "path",
    [
        "/v2",
        "/v2/models/scale",
        "/v2/models/scale/ready",
        "/no-such-route",
        "/metrics",
        "/ui/",
        "/openapi.json",
        "/docs",
    ],
)
def test_every_rest_route_but_health_needs_a_token(server: Server, path: str) -> None:
    assert httpx.get(url(server, path)).status_code == 401
    assert httpx.get(url(server, path), headers=bearer("ci-secret-2")).status_code in (200, 404)


def test_health_routes_are_open(server: Server) -> None:
    assert httpx.get(url(server, "/v2/health/live")).status_code == 200
    assert httpx.get(url(server, "/v2/health/ready")).status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(inference_pb2.ServerLiveRequest(), timeout=10).live
        assert stub.ServerReady(inference_pb2.ServerReadyRequest(), timeout=10).ready


def test_grpc_needs_a_valid_token(server: Server) -> None:
    request = inference_pb2.ModelInferRequest(model_name="scale")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, 3])
    tensor.contents.fp32_contents.extend([1.0, 2.0, 3.0])
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        calls: list[Any] = [
            lambda metadata: stub.ModelInfer(request, timeout=10, metadata=metadata),
            lambda metadata: stub.ServerMetadata(
                inference_pb2.ServerMetadataRequest(), timeout=10, metadata=metadata
            ),
            lambda metadata: stub.RepositoryIndex(
                inference_pb2.RepositoryIndexRequest(), timeout=10, metadata=metadata
            ),
        ]
        for call in calls:
            for metadata in ((), (("authorization", "Bearer wrong"),)):
                with pytest.raises(grpc.RpcError) as info:
                    call(metadata)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert call((("authorization", "Bearer ci-secret-2"),)) is not None
        reply = calls[0]((("authorization", "Bearer ci-secret-2"),))
        assert list(reply.outputs[0].contents.fp32_contents) == [2.0, 4.0, 6.0]


def test_pipeline_requests_carry_the_callers_name_never_a_forged_one(
    server: Server, gateway: FakeGateway
) -> None:
    gateway.calls.clear()
    forged = {CALLER: "root", "x-team": "radiology"}
    rest = httpx.post(
        url(server, f"/v2/pipelines/{PIPELINE}/infer"),
        json={"inputs": [{"name": "t", "shape": [1], "datatype": "BYTES", "data": ["a"]}]},
        headers={**forged, **bearer("alice-secret-1")},
    )
    assert rest.status_code == 200
    request = inference_pb2.ModelInferRequest(model_name=PIPELINE)
    request.inputs.add(name="t", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"b")
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(
            request,
            timeout=10,
            metadata=((CALLER, "root"), ("authorization", "Bearer ci-secret-2")),
        )
    assert [call.headers[CALLER] for call in gateway.calls] == ["alice", "ci"]
    assert gateway.calls[0].headers["x-team"] == "radiology"
    assert not any("authorization" in call.headers for call in gateway.calls)


def test_a_caller_refused_never_reaches_the_pipeline(server: Server, gateway: FakeGateway) -> None:
    gateway.calls.clear()
    refused = httpx.post(
        url(server, f"/v2/pipelines/{PIPELINE}/infer"), json=BODY, headers=bearer("nope")
    )
    assert refused.status_code == 401
    assert gateway.calls == []


def test_the_views_show_the_caller() -> None:
    shown = shown_headers([(CALLER, b"alice"), ("authorization", b"Bearer x")])
    assert shown == {CALLER: "alice"}


# Metrics, the API docs and the web view can be opened -------------------------------------------


def test_metrics_docs_and_ui_opened_answer_without_a_token(
    spec: tuple[PipelineSpec, ModuleType],
) -> None:
    options = {
        "auth_tokens": Tokens(TOKENS),
        "open_metrics": True,
        "open_docs": True,
        "open_ui": True,
    }
    with running_server([spec[0]], FakeGateway(), **options) as opened:
        assert httpx.get(url(opened, "/metrics")).status_code == 200
        assert httpx.get(url(opened, "/openapi.json")).status_code == 200
        assert httpx.get(url(opened, "/docs")).status_code == 200
        assert httpx.get(url(opened, "/ui/")).status_code == 200
        assert httpx.get(url(opened, "/ui/api/pipelines")).status_code == 200
        assert rest_infer(opened, {}).status_code == 401


def test_without_tokens_anyone_is_served_and_a_warning_says_so(
    spec: tuple[PipelineSpec, ModuleType], caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="streamdag.serving"),
        running_server([spec[0]], FakeGateway()) as open_server,
    ):
        assert rest_infer(open_server, {}).status_code == 200
        assert httpx.get(url(open_server, "/metrics")).status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "no --auth-tokens" in w]) == 1


def test_a_server_reads_its_token_file_at_once(
    spec: tuple[PipelineSpec, ModuleType], tmp_path: Path
) -> None:
    path = tmp_path / "tokens"
    path.write_text("alice alice-secret-1\n")
    with pytest.raises(ConfigError, match=r"tokens:1: expected `name: token`"):  # noqa: SIM117
        with running_server([spec[0]], FakeGateway(), auth_tokens=path):
            pass


def test_a_websocket_without_a_token_is_closed() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("reached the app")

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/v2/models/scale/infer", "headers": []}
    asyncio.run(BearerAuth(app, tokens=Tokens(TOKENS))(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]
