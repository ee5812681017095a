"""Fuzzed front doors: generated OIP requests, valid and broken (``fuzz_cases``), at the
model and pipeline routes of a real server in front of a real pipeline on the real broker.

Every broken request gets a client error (4xx with an OIP error body; a gRPC client
status with a message), never a 5xx or a dropped connection; every valid one is answered;
the server stays up; and the pipeline's inputs topic then holds exactly the valid pipeline
requests, each with the tensors it was sent with. The runs are derandomized, so CI sees
the same cases every time.
"""

from __future__ import annotations

import gzip
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka_support import read_topic, run_pipeline
from server_support import running_server

from streamdag.pipeline import PipelineSpec, compile_plan, load_spec
from streamdag.protocol import ModelInferResponse, decode_request, request_from_bytes
from streamdag.serving import KafkaGateway, Server

from .fuzz_cases import (
    BINARY_ONLY,
    GRPC_ONLY,
    JSON_ONLY,
    MODEL,
    SEMANTIC,
    Case,
    binary_body,
    cases,
    grpc_body,
    json_body,
    path_parts,
)

pytestmark = pytest.mark.kafka

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000"))  # per door
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HANDLERS = """
import numpy as np

def double(inputs):
    text = np.array([t.upper() for t in inputs["text"].flat], dtype=object)
    with np.errstate(over="ignore"):  # 2 * 3e38 is infinity in FP32, as it should be
        y = inputs["x"] * 2
    return {"y": y, "t": text.reshape(inputs["text"].shape)}
"""
# at_least_once: no transaction per batch, so the valid pipeline requests come back
# sooner; the doors do the same whatever the guarantee.
SPEC = """
name: "{name}"
guarantee: at_least_once
partitions: 2
timeout_ms: 20000
retry: {{max_attempts: 1}}
models:
  {model}:
    runtime: python
    handler: "{module}:double"
    batch: {{max_size: 16, max_wait_ms: 0}}
    inputs:
      - {{name: x, datatype: FP32, shape: [-1, 4]}}
      - {{name: text, datatype: BYTES, shape: [-1]}}
    outputs:
      - {{name: y, datatype: FP32, shape: [-1, 4]}}
      - {{name: t, datatype: BYTES, shape: [-1]}}
steps:
  - {{name: double, model: {model}}}
"""
GRPC_CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}


@dataclass
class Door:
    """The server behind both doors, and the pipeline requests it was expected to take."""

    server: Server
    spec: PipelineSpec
    accepted: dict[str, np.ndarray] = field(default_factory=dict)  # request id -> x

    def take(self, case: Case, request_id: str) -> None:
        if case.route == "pipeline":
            assert request_id not in self.accepted
            self.accepted[request_id] = case.x


@pytest.fixture(scope="module")
def door(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    folder = tmp_path_factory.mktemp("fuzz")
    module = f"fuzz_models_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(HANDLERS)
    path = folder / "pipeline.yaml"
    name = f"fuzz-{uuid.uuid4().hex[:8]}"
    path.write_text(SPEC.format(name=name, model=MODEL, module=module))
    spec = load_spec(path)
    bootstrap = kafka_broker.bootstrap
    with (
        run_pipeline(spec, bootstrap),
        running_server([spec], KafkaGateway([compile_plan(spec)], bootstrap)) as server,
    ):
        door = Door(server, spec)
        yield door
        # The server is still up and answers on both doors.
        assert httpx.get(f"http://127.0.0.1:{server.http_port}/v2/health/ready").status_code == 200
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            live = channel.unary_unary(
                "/inference.GRPCInferenceService/ServerLive",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            assert live(b"", timeout=10) == b"\x08\x01"
    # The inputs topic holds exactly the valid pipeline requests, with what they carried.
    expected = door.accepted
    records = read_topic(bootstrap, f"streamdag.{name}.inputs", until=len(expected), settle=2)
    keys = [(key or b"").decode() for key, _, _ in records]
    assert sorted(keys) == sorted(expected)
    for key, value, _ in records:
        arrays = decode_request(request_from_bytes(value))
        assert sorted(arrays) == ["text", "x"]
        np.testing.assert_array_equal(arrays["x"], expected[(key or b"").decode()])


def _fresh(case: Case) -> Case:
    case.request_id = f"fuzz-{uuid.uuid4().hex}"
    return case


# -- REST ------------------------------------------------------------------------------
REST_FORMS = st.one_of(
    st.tuples(st.just("json"), cases((*SEMANTIC, *JSON_ONLY))),
    st.tuples(st.just("binary"), cases((*SEMANTIC, *BINARY_ONLY))),
)


def _rest_call(client: httpx.Client, door: Door, form: str, case: Case) -> httpx.Response:
    name, version = path_parts(case, door.spec.name)
    if case.route == "pipeline" and not version:
        path = f"/v2/pipelines/{name}/infer"
    else:
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    headers = {"content-type": "application/json"}
    if form == "json":
        body = json_body(case, door.spec.name)
        if case.mutation == "encoding":
            encoding = ["gzip", "deflate", "br", "gzip, gzip"][case.pick % 4]
            headers["content-encoding"] = encoding
            if case.pick % 2:  # says gzip, holds something else
                body = gzip.compress(body)[: len(body) // 2]
    else:
        body, length = binary_body(case, door.spec.name)
        headers = {
            "content-type": "application/octet-stream",
            "inference-header-content-length": length,
        }
    return client.post(path, content=body, headers=headers)


def _rest_outputs(response: httpx.Response) -> dict[str, Any]:
    length = response.headers.get("inference-header-content-length")
    header = response.content if length is None else response.content[: int(length)]
    body: dict[str, Any] = json.loads(header)
    return body


def test_rest_door_answers_every_generated_request(door: Door) -> None:
    client = httpx.Client(base_url=f"http://127.0.0.1:{door.server.http_port}", timeout=30)

    @FUZZ
    @given(REST_FORMS)
    def check(generated: tuple[str, Case]) -> None:
        form, case = generated
        _fresh(case)
        response = _rest_call(client, door, form, case)
        described = (
            f"{form} {case.route} {case.mutation}: {response.status_code} {response.text[:300]}"
        )
        if case.valid:
            assert response.status_code == 200, described
            request_id = response.headers["x-request-id"]
            door.take(case, request_id)
            body = _rest_outputs(response)
            assert body.get("id") == request_id
            if case.has_id:
                assert request_id == case.request_id
            y = next((o for o in body["outputs"] if o["name"] == "y"), None)
            if y is not None and "data" in y:
                with np.errstate(over="ignore"):
                    expected = (case.x * 2).ravel()
                np.testing.assert_array_equal(np.array(y["data"], dtype=np.float32), expected)
            return
        assert 400 <= response.status_code < 500, described
        error = response.json()
        assert isinstance(error, dict) and list(error) == ["error"], described
        assert isinstance(error["error"], str) and error["error"], described

    try:
        check()
    finally:
        client.close()


# -- gRPC ------------------------------------------------------------------------------
GRPC_FORMS = st.tuples(st.booleans(), cases((*SEMANTIC, *GRPC_ONLY)))


def test_grpc_door_answers_every_generated_request(door: Door) -> None:
    channel = grpc.insecure_channel(
        f"127.0.0.1:{door.server.grpc_port}",
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    infer: Callable[..., bytes] = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )

    @FUZZ
    @given(GRPC_FORMS)
    def check(generated: tuple[bool, Case]) -> None:
        raw, case = generated
        _fresh(case)
        body = grpc_body(case, door.spec.name, raw=raw)
        described = f"raw={raw} {case.route} {case.mutation}"
        try:
            answer = infer(body, timeout=30)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
            assert not case.valid, f"{described}: {code} {details}"
            assert code in GRPC_CLIENT_ERRORS, f"{described}: {code} {details}"
            assert details, described
            return
        assert case.valid, f"{described}: answered"
        response = ModelInferResponse.FromString(answer)
        door.take(case, response.id)
        if case.has_id:
            assert response.id == case.request_id

    try:
        check()
    finally:
        channel.close()
