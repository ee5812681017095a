"""Pipeline routes over REST and gRPC, with an in-memory gateway standing in for Kafka."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from streamdag.protocol import decode_response, encode_request, inference_pb2, inference_pb2_grpc

from .conftest import Served
from .fake_gateway import PIPELINE, Call, FakeGateway


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.http_url, timeout=30) as client:
        yield client


@pytest.fixture
def stub(served: Served) -> Iterator[Any]:
    with grpc.insecure_channel(served.grpc) as channel:
        yield inference_pb2_grpc.GRPCInferenceServiceStub(channel)


def body(request_id: str, **parameters: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": request_id,
        "inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [4, 5]}],
    }
    if parameters:
        out["parameters"] = parameters
    return out


def call_for(gateway: FakeGateway, request_id: str) -> Call:
    (call,) = [c for c in gateway.calls if c.request.id == request_id]
    return call


def new_id() -> str:
    return uuid.uuid4().hex


def test_rest_pipeline_infer(http: httpx.Client, gateway: FakeGateway) -> None:
    rid = new_id()
    response = http.post(
        f"/v2/pipelines/{PIPELINE}/infer",
        json=body(rid, timeout=2_500_000),
        headers={"x-tenant": "t1", "traceparent": "00-abc-def-01", "accept": "*/*"},
    )
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [4, 5]
    assert response.headers["x-request-id"] == rid
    assert response.headers["x-pipeline-reply"] == PIPELINE  # reply headers come back
    call = call_for(gateway, rid)
    assert call.pipeline == PIPELINE and call.timeout == 2.5
    assert call.headers == {"x-tenant": "t1", "traceparent": "00-abc-def-01", "x-request-id": rid}


def test_the_model_route_reaches_a_pipeline_too(http: httpx.Client, gateway: FakeGateway) -> None:
    rid = new_id()
    response = http.post(f"/v2/models/{PIPELINE}/infer", json=body(rid))
    assert response.status_code == 200 and response.json()["model_name"] == PIPELINE
    assert call_for(gateway, rid).timeout is None


def test_unknown_pipelines_are_not_found(http: httpx.Client) -> None:
    for name in ("nope", "scale"):
        response = http.post(f"/v2/pipelines/{name}/infer", json=body(new_id()))
        assert response.status_code == 404
        assert response.json() == {"error": f"pipeline {name} not found"}


def test_bad_input_never_reaches_the_gateway(http: httpx.Client, gateway: FakeGateway) -> None:
    before = len(gateway.calls)
    bad = body(new_id())
    bad["inputs"][0]["shape"] = [3]
    response = http.post(f"/v2/pipelines/{PIPELINE}/infer", json=bad)
    assert response.status_code == 400 and "has 2 elements but shape [3] needs 3" in response.text
    response = http.post(f"/v2/pipelines/{PIPELINE}/infer", json=body(new_id(), timeout="soon"))
    assert response.status_code == 400 and "parameters.timeout" in response.text
    assert len(gateway.calls) == before


def test_booleans_are_not_numbers_at_the_pipeline_door(
    http: httpx.Client, gateway: FakeGateway
) -> None:
    before = len(gateway.calls)
    bad = body(new_id())
    bad["inputs"][0].update(datatype="FP32", shape=[4], data=[True, False, 1, 2])
    for path in (f"/v2/pipelines/{PIPELINE}/infer", f"/v2/models/{PIPELINE}/infer"):
        response = http.post(path, json=bad)
        assert response.status_code == 400
        assert response.json()["error"] == "inputs[0].data: FP32 takes numbers, got booleans"
    assert len(gateway.calls) == before


def test_request_ids_over_the_limit_are_refused_before_any_work(
    http: httpx.Client, stub: Any, gateway: FakeGateway
) -> None:
    before = len(gateway.calls)
    long_id = "r" * 257
    expected = "request id: 257 characters, more than the 256 allowed"
    for path in (f"/v2/pipelines/{PIPELINE}/infer", f"/v2/pipelines/{PIPELINE}/jobs"):
        in_body = http.post(path, json=body(long_id))
        in_header = http.post(path, json=body(""), headers={"x-request-id": long_id})
        for response in (in_body, in_header):
            assert response.status_code == 400
            assert response.json() == {"error": expected}
            assert "x-request-id" not in response.headers  # refused ids are not echoed
    assert http.get(f"/v2/pipelines/{PIPELINE}/jobs/{long_id}").status_code == 400

    # 8 KB would overflow the reply trailer that carries the id back to the client.
    for request_id in ("g" * 8200, long_id):
        request = encode_request(PIPELINE, {"x": [1]}, id=request_id)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request)
        error: Any = caught.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("request id: ")
    assert len(gateway.calls) == before

    at_limit = "k" * 256
    _, call = stub.ModelInfer.with_call(encode_request(PIPELINE, {"x": [1]}, id=at_limit))
    assert ("x-request-id", at_limit) in call.trailing_metadata()
    assert http.post(f"/v2/pipelines/{PIPELINE}/infer", json=body(at_limit)).status_code == 200


def binary_body(request_id: str, array: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """A body in the binary tensor extension holding ``array`` as FP32 input x."""
    header = json.dumps(
        {
            "id": request_id,
            "inputs": [
                {
                    "name": "x",
                    "shape": list(array.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": array.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + array.tobytes(), {"inference-header-content-length": str(len(header))}


def test_requests_too_large_for_a_kafka_record_are_refused_before_the_gateway(
    http: httpx.Client, stub: Any, gateway: FakeGateway
) -> None:
    before = len(gateway.calls)
    big = np.zeros(500_000, np.float32)  # 2 MB: more than the gateway's 1 MB records
    too_large = (
        rf"^pipeline {PIPELINE}: the request makes a Kafka record of \d+ bytes, "
        r"over the limit of 1000000 bytes \(message.max.bytes\); a payload store carries "
        r"larger requests \(--payload-store or STREAMDAG_PAYLOAD_STORE\)$"
    )
    for path in (f"/v2/pipelines/{PIPELINE}/infer", f"/v2/pipelines/{PIPELINE}/jobs"):
        content, headers = binary_body(new_id(), big)
        response = http.post(path, content=content, headers=headers)
        assert response.status_code == 413
        assert re.match(too_large, response.json()["error"])
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(encode_request(PIPELINE, {"x": big}))
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert re.match(too_large, error.details())
    assert len(gateway.calls) == before

    rid = new_id()
    content, headers = binary_body(rid, np.zeros(240_000, np.float32))  # 960 KB fits
    response = http.post(f"/v2/pipelines/{PIPELINE}/infer", content=content, headers=headers)
    assert response.status_code == 200 and call_for(gateway, rid)


ERRORS = [
    ("invalid_argument", 400, grpc.StatusCode.INVALID_ARGUMENT),
    ("not_found", 404, grpc.StatusCode.NOT_FOUND),
    ("deadline_exceeded", 504, grpc.StatusCode.DEADLINE_EXCEEDED),
    ("unavailable", 503, grpc.StatusCode.UNAVAILABLE),
    ("model_error", 500, grpc.StatusCode.INTERNAL),
    ("kafka", 500, grpc.StatusCode.INTERNAL),
]


@pytest.mark.parametrize(("code", "status", "grpc_status"), ERRORS)
def test_gateway_errors_map_to_statuses(
    http: httpx.Client, stub: Any, code: str, status: int, grpc_status: grpc.StatusCode
) -> None:
    rid = new_id()
    response = http.post(f"/v2/pipelines/{PIPELINE}/infer", json=body(rid, fake_error=code))
    assert response.status_code == status
    assert response.headers["x-request-id"] == rid
    expected = (
        f"no reply to request {rid} within 1 s"
        if code == "deadline_exceeded"
        else f"step classify failed: {code} from the pipeline"
    )
    assert response.json() == {"error": expected}

    request = encode_request(PIPELINE, {"x": [1]}, id=rid, parameters={"fake_error": code})
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    error: Any = caught.value
    assert (error.code(), error.details()) == (grpc_status, expected)


def test_grpc_pipeline_infer_passes_deadline_metadata_and_reply_headers(
    stub: Any, gateway: FakeGateway
) -> None:
    rid = new_id()
    request = encode_request(PIPELINE, {"x": np.array([1.5], np.float32)}, id=rid, raw=False)
    response, call = stub.ModelInfer.with_call(
        request, timeout=20, metadata=[("x-tenant", "t2"), ("other", "not forwarded")]
    )
    assert decode_response(response)["x"].tolist() == [1.5]
    assert not response.raw_output_contents  # typed in, typed out
    trailing = dict(call.trailing_metadata())
    assert trailing["x-request-id"] == rid and trailing["x-pipeline-reply"] == PIPELINE
    seen = call_for(gateway, rid)
    assert seen.headers == {"x-tenant": "t2", "x-request-id": rid}
    # The call's gRPC deadline arrives as the timeout (grpc-timeout is rounded on the wire).
    assert seen.timeout is not None and abs(seen.timeout - 20) < 1

    rid = new_id()
    request = encode_request(PIPELINE, {"x": [1]}, id=rid, parameters={"timeout": 500_000})
    stub.ModelInfer(request, timeout=20)
    assert call_for(gateway, rid).timeout == 0.5


def test_jobs_accept_then_pend_then_answer(http: httpx.Client, gateway: FakeGateway) -> None:
    rid = new_id()
    submitted = http.post(
        f"/v2/pipelines/{PIPELINE}/jobs", json=body(rid), headers={"x-tenant": "t3"}
    )
    assert submitted.status_code == 202 and submitted.json() == {"id": rid}
    assert submitted.headers["location"] == f"/v2/pipelines/{PIPELINE}/jobs/{rid}"
    assert call_for(gateway, rid).headers["x-tenant"] == "t3"
    pending = http.get(f"/v2/pipelines/{PIPELINE}/jobs/{rid}")
    assert pending.status_code == 202 and pending.json() == {"status": "pending"}
    done = http.get(f"/v2/pipelines/{PIPELINE}/jobs/{rid}")
    assert done.status_code == 200
    assert done.json()["id"] == rid and done.json()["outputs"][0]["data"] == [4, 5]
    assert done.headers["x-request-id"] == rid


def test_jobs_report_errors_and_unknown_ids(http: httpx.Client) -> None:
    rid = new_id()
    http.post(f"/v2/pipelines/{PIPELINE}/jobs", json=body(rid, fake_error="model_error"))
    assert http.get(f"/v2/pipelines/{PIPELINE}/jobs/{rid}").status_code == 202
    failed = http.get(f"/v2/pipelines/{PIPELINE}/jobs/{rid}")
    assert failed.status_code == 500 and "model_error from the pipeline" in failed.json()["error"]
    unknown = http.get(f"/v2/pipelines/{PIPELINE}/jobs/nope")
    assert unknown.status_code == 404 and "job nope" in unknown.json()["error"]
    assert http.post("/v2/pipelines/nope/jobs", json=body(new_id())).status_code == 404


def test_a_gateway_that_cannot_reach_kafka_leaves_the_server_live_but_not_ready(
    http: httpx.Client, stub: Any, gateway: FakeGateway
) -> None:
    gateway.reachable = False
    try:
        assert http.get("/v2/health/live").status_code == 200
        assert stub.ServerLive(inference_pb2.ServerLiveRequest()).live
        not_ready = http.get("/v2/health/ready")
        assert not_ready.status_code == 400
        assert not_ready.json() == {"error": "server is not ready"}
        assert not stub.ServerReady(inference_pb2.ServerReadyRequest()).ready
        # The pipelines are not ready; the models served here are.
        assert http.get(f"/v2/models/{PIPELINE}/ready").status_code == 400
        assert not stub.ModelReady(inference_pb2.ModelReadyRequest(name=PIPELINE)).ready
        assert http.get("/v2/models/scale/ready").status_code == 200
        index = {e["name"]: e for e in http.post("/v2/repository/index", json={}).json()}
        assert index[PIPELINE]["state"] == "UNAVAILABLE" and "Kafka" in index[PIPELINE]["reason"]
        ready = http.post("/v2/repository/index", json={"ready": True}).json()
        assert PIPELINE not in [e["name"] for e in ready] and "scale" in [e["name"] for e in ready]
        # Requests are turned away at once, never handed to the gateway.
        for route in ("infer", "jobs"):
            rid = new_id()
            response = http.post(f"/v2/pipelines/{PIPELINE}/{route}", json=body(rid))
            assert response.status_code == 503
            assert f"pipeline {PIPELINE} is not ready: Kafka" in response.json()["error"]
            assert not [c for c in gateway.calls if c.request.id == rid]
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(encode_request(PIPELINE, {"x": np.array([1])}))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        gateway.reachable = True
    assert http.get("/v2/health/ready").status_code == 200
    assert http.get(f"/v2/models/{PIPELINE}/ready").status_code == 200


def test_a_pipeline_with_a_step_without_worker_is_not_ready_and_says_why(
    http: httpx.Client, stub: Any, gateway: FakeGateway
) -> None:
    gateway.idle_steps = ("double",)
    try:
        assert http.get("/v2/health/ready").status_code == 200  # the server's meaning holds
        not_ready = http.get(f"/v2/models/{PIPELINE}/ready")
        assert not_ready.json() == {
            "error": f"pipeline {PIPELINE} is not ready: step double has no worker"
        }
        reply, call = stub.ModelReady.with_call(inference_pb2.ModelReadyRequest(name=PIPELINE))
        assert not reply.ready
        assert ("streamdag-not-ready", not_ready.json()["error"]) in call.trailing_metadata()
        index = {e["name"]: e for e in http.post("/v2/repository/index", json={}).json()}
        assert index[PIPELINE]["state"] == "UNAVAILABLE"
        assert index[PIPELINE]["reason"] == "step double has no worker"
    finally:
        gateway.idle_steps = ()
    assert http.get(f"/v2/models/{PIPELINE}/ready").status_code == 200


def test_pipelines_are_listed_and_described(http: httpx.Client) -> None:
    assert http.get(f"/v2/models/{PIPELINE}/ready").status_code == 200
    meta = http.get(f"/v2/models/{PIPELINE}").json()
    assert meta == {
        "name": PIPELINE,
        "versions": [],
        "platform": "streamdag_pipeline",
        "inputs": [],
        "outputs": [],
    }
    response = http.post(f"/v2/repository/models/{PIPELINE}/unload")
    assert response.status_code == 400 and "is a pipeline" in response.json()["error"]
