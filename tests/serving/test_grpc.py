"""The gRPC front door: tritonclient.grpc unchanged (in its own process), and a plain stub
for typed contents, metadata and statuses."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from streamdag.protocol import (
    ModelInferRequest,
    decode_response,
    encode_request,
    inference_pb2,
    inference_pb2_grpc,
)

from .conftest import Served
from .fake_gateway import PIPELINE

CLIENT = Path(__file__).parent / "triton_grpc_client.py"


@pytest.fixture(scope="module")
def triton(served: Served) -> dict[str, Any]:
    """What tritonclient.grpc saw of the server (see triton_grpc_client.py)."""
    done = subprocess.run(
        [sys.executable, "-W", "error", str(CLIENT), served.grpc, PIPELINE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture
def stub(served: Served) -> Iterator[Any]:
    with grpc.insecure_channel(served.grpc) as channel:
        yield inference_pb2_grpc.GRPCInferenceServiceStub(channel)


def x_request(model: str = "scale", *, raw: bool = True, **kwargs: Any) -> ModelInferRequest:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    return encode_request(model, {"x": x}, raw=raw, **kwargs)


# tritonclient.grpc ----------------------------------------------------------------------


def test_triton_health_and_metadata(triton: dict[str, Any]) -> None:
    assert triton["live"] and triton["ready"] and triton["scale_ready"]
    assert triton["server_metadata"]["name"] == "streamdag"
    assert "model_repository" in triton["server_metadata"]["extensions"]
    # Protobuf's JSON form writes int64 as strings.
    assert triton["scale_metadata"] == {
        "name": "scale",
        "versions": ["1"],
        "platform": "python",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": ["-1", "3"]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": ["-1", "3"]}],
    }
    assert triton["add_one_metadata"]["platform"] == "onnxruntime_onnx"
    names = [m["name"] for m in triton["index"]["models"]]
    assert {"scale", "upper", "add_one", PIPELINE} <= set(names)


def test_triton_infer_fp32_and_bytes(triton: dict[str, Any]) -> None:
    assert triton["scale"] == {
        "y": [[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]],
        "id": "grpc-scale-1",
        "version": "1",
    }
    assert triton["upper"] == {"upper": ["ABC", "H\u00e9LLO", ""], "outputs": ["upper"]}
    assert triton["add_one"] == [[2.5, 0.0]]


def test_triton_infer_a_pipeline_by_model_name(triton: dict[str, Any], gateway: Any) -> None:
    assert triton["pipeline"] == {"x": [7, 8], "id": "grpc-pipe-1"}
    (call,) = [c for c in gateway.calls if c.request.id == "grpc-pipe-1"]
    assert call.headers["x-tenant"] == "t1" and call.headers["x-request-id"] == "grpc-pipe-1"


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("wrong_dtype", "INVALID_ARGUMENT", "input 'x': expected datatype FP32, got INT32"),
        ("unknown_model", "NOT_FOUND", "model nope not found"),
        ("unknown_input", "INVALID_ARGUMENT", "missing input 'x'; it takes 'x'"),
        ("model_error", "INTERNAL", "raised RuntimeError: the model fell over"),
        ("unknown_metadata", "NOT_FOUND", "model nope not found"),
        ("unknown_version", "NOT_FOUND", "model scale version 7 not found"),
    ],
)
def test_triton_sees_statuses_and_messages(
    triton: dict[str, Any], case: str, status: str, message: str
) -> None:
    assert triton[case]["status"] == f"StatusCode.{status}"
    assert message in triton[case]["message"]


# A plain stub -----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_answers_in_the_form_of_the_request(stub: Any, raw: bool) -> None:
    response = stub.ModelInfer(x_request(raw=raw, id="g-1"))
    assert bool(response.raw_output_contents) is raw
    assert bool(response.outputs[0].contents.fp32_contents) is not raw
    y = decode_response(response)["y"]
    np.testing.assert_array_equal(y, np.arange(6, dtype=np.float32).reshape(2, 3) * 2)


def test_typed_bytes(stub: Any) -> None:
    text = np.array([b"a\x00b", b"xyz"], dtype=object)
    response = stub.ModelInfer(encode_request("upper", {"text": text}, raw=False))
    assert list(response.outputs[0].contents.bytes_contents) == [b"A\x00B", b"XYZ"]
    assert list(response.outputs[1].contents.int_contents) == [3, 3]


def test_request_id_from_the_message_metadata_or_new(stub: Any) -> None:
    _, call = stub.ModelInfer.with_call(x_request(id="m-1"), metadata=[("x-request-id", "md-1")])
    assert ("x-request-id", "m-1") in call.trailing_metadata()
    response, call = stub.ModelInfer.with_call(x_request(), metadata=[("x-request-id", "md-2")])
    assert response.id == "md-2" and ("x-request-id", "md-2") in call.trailing_metadata()
    response = stub.ModelInfer(x_request())
    assert len(response.id) == 32


def test_errors_carry_the_request_id(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(x_request("nope", id="e-1"))
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "model nope not found"
    assert ("x-request-id", "e-1") in error.trailing_metadata()


@pytest.mark.parametrize(
    ("mutate", "status", "message"),
    [
        (
            lambda r: setattr(r, "model_name", ""),
            "INVALID_ARGUMENT",
            "model_name: must not be empty",
        ),
        (
            lambda r: r.inputs[0].shape.__setitem__(0, 5),
            "INVALID_ARGUMENT",
            "raw contents hold 24 bytes but shape [5, 3]",
        ),
        (
            lambda r: setattr(r.inputs[0], "datatype", "FP33"),
            "INVALID_ARGUMENT",
            "unknown datatype 'FP33'",
        ),
        (
            lambda r: r.raw_input_contents.append(b""),
            "INVALID_ARGUMENT",
            "raw_input_contents has 2 entries",
        ),
        (
            lambda r: setattr(r, "model_version", "2"),
            "NOT_FOUND",
            "model scale version 2 not found",
        ),
    ],
    ids=["no-model", "shape-vs-data", "unknown-datatype", "extra-raw", "unknown-version"],
)
def test_bad_requests(stub: Any, mutate: Any, status: str, message: str) -> None:
    request = x_request()
    mutate(request)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    error: Any = caught.value
    assert error.code() == getattr(grpc.StatusCode, status)
    assert message in error.details()


@pytest.mark.parametrize("method", ["ModelInfer", "ModelMetadata", "ServerLive"])
def test_a_body_that_is_no_protobuf_message_is_invalid(served: Served, method: str) -> None:
    with grpc.insecure_channel(served.grpc) as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\xff\xff\xff", timeout=10)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"request body is not an inference.{method}Request: ")


def test_a_shape_no_tensor_can_have_is_invalid(stub: Any) -> None:
    request = ModelInferRequest(model_name="echo", raw_input_contents=[b""])
    request.inputs.add(name="x", datatype="FP32", shape=[2**62, 2**62, 0])
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        f"input 'x': shape [{2**62}, {2**62}, 0] is larger than any tensor can be"
    )


def test_health_metadata_and_repository(stub: Any) -> None:
    assert stub.ServerLive(inference_pb2.ServerLiveRequest()).live
    assert stub.ServerReady(inference_pb2.ServerReadyRequest()).ready
    assert stub.ModelReady(inference_pb2.ModelReadyRequest(name="upper", version="1")).ready
    meta = stub.ModelMetadata(inference_pb2.ModelMetadataRequest(name="upper"))
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("upper", "BYTES", [-1]),
        ("length", "INT32", [-1]),
    ]
    stub.RepositoryModelUnload(inference_pb2.RepositoryModelUnloadRequest(model_name="echo"))
    try:
        assert not stub.ModelReady(inference_pb2.ModelReadyRequest(name="echo")).ready
        ready = stub.RepositoryIndex(inference_pb2.RepositoryIndexRequest(ready=True))
        assert "echo" not in [m.name for m in ready.models]
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(encode_request("echo", {"v": [1]}))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        stub.RepositoryModelLoad(inference_pb2.RepositoryModelLoadRequest(model_name="echo"))
    assert stub.ModelReady(inference_pb2.ModelReadyRequest(name="echo")).ready
    with pytest.raises(grpc.RpcError) as caught:
        stub.RepositoryModelLoad(inference_pb2.RepositoryModelLoadRequest(model_name=PIPELINE))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
