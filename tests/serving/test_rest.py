"""The REST front door, driven by the unmodified tritonclient.http and by raw HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as httpclient
from server_support import running_server
from tritonclient.utils import InferenceServerException

from streamdag.pipeline import PipelineSpec
from streamdag.protocol import encode_response, response_to_json
from streamdag.serving.rest_body import OutputForm, render_infer_response
from streamdag.settings import get_settings

from .conftest import Served


@pytest.fixture
def triton(served: Served) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(served.http)
    yield client
    client.close()


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.http_url, timeout=30) as client:
        yield client


def infer_input(name: str, array: np.ndarray, datatype: str, binary: bool) -> Any:
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


# Health and metadata ----------------------------------------------------------------------


def test_health_and_server_metadata(triton: httpclient.InferenceServerClient) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    meta = triton.get_server_metadata()
    assert meta["name"] == "streamdag" and meta["version"] == "0.1.0"
    assert {"binary_tensor_data", "model_repository", "pipelines"} <= set(meta["extensions"])


def test_health_answers_are_bare_status_codes(http: httpx.Client) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/scale/ready"):
        response = http.get(path)
        assert (response.status_code, response.content) == (200, b"")
    assert http.get("/v2/models/scale/versions/1/ready").status_code == 200


def test_model_metadata(triton: httpclient.InferenceServerClient) -> None:
    assert triton.get_model_metadata("scale") == {
        "name": "scale",
        "versions": ["1"],
        "platform": "python",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
    }
    onnx = triton.get_model_metadata("add_one", model_version="1")
    assert onnx["platform"] == "onnxruntime_onnx"
    assert onnx["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
    assert triton.is_model_ready("scale") and not triton.is_model_ready("nope")


# Inference ------------------------------------------------------------------------------


@pytest.mark.parametrize("binary_in", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("binary_out", [False, True], ids=["json-out", "binary-out"])
def test_fp32_python_model(
    triton: httpclient.InferenceServerClient, binary_in: bool, binary_out: bool
) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    result = triton.infer(
        "scale",
        [infer_input("x", x, "FP32", binary_in)],
        outputs=[httpclient.InferRequestedOutput("y", binary_data=binary_out)],
        request_id="fp32-1",
    )
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "scale",
        "1",
        "fp32-1",
    )
    # The binary extension is used exactly when the output asked for it.
    assert ("data" in response["outputs"][0]) is not binary_out


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_fp32_onnx_model(triton: httpclient.InferenceServerClient, binary: bool) -> None:
    x = np.array([[1.5, -1.0], [0.0, 2.0]], dtype=np.float32)
    # No outputs named: tritonclient asks for all of them in binary.
    result = triton.infer("add_one", [infer_input("x", x, "FP32", binary)])
    np.testing.assert_array_equal(result.as_numpy("y"), x + 1)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_bytes_python_model(triton: httpclient.InferenceServerClient, binary: bool) -> None:
    text = np.array([b"abc", "h\u00e9llo".encode(), b""], dtype=object)
    result = triton.infer(
        "upper",
        [infer_input("text", text, "BYTES", binary)],
        outputs=[
            httpclient.InferRequestedOutput("upper", binary_data=binary),
            httpclient.InferRequestedOutput("length", binary_data=binary),
        ],
    )
    upper = [
        item if isinstance(item, bytes) else item.encode() for item in result.as_numpy("upper")
    ]
    assert upper == [b"ABC", "H\u00e9LLO".encode(), b""]
    assert result.as_numpy("length").tolist() == [3, 6, 0]


def test_mixed_binary_and_json_inputs_and_outputs(triton: httpclient.InferenceServerClient) -> None:
    a = np.array([[1, 2]], dtype=np.int64)
    b = np.array([["x"]], dtype=object)
    c = np.array([[0.5, 1.5, 2.5]], dtype=np.float64)
    result = triton.infer(
        "echo",
        [
            infer_input("a", a, "INT64", True),
            infer_input("b", b, "BYTES", False),
            infer_input("c", c, "FP64", True),
        ],
        outputs=[
            httpclient.InferRequestedOutput("c", binary_data=False),
            httpclient.InferRequestedOutput("a", binary_data=True),
        ],
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["c", "a"]
    np.testing.assert_array_equal(result.as_numpy("a"), a)
    np.testing.assert_array_equal(result.as_numpy("c"), c)


def test_gzip_request_bodies(triton: httpclient.InferenceServerClient) -> None:
    x = np.ones((1, 3), dtype=np.float32)
    result = triton.infer(
        "scale", [infer_input("x", x, "FP32", True)], request_compression_algorithm="gzip"
    )
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2)


def test_nan_and_infinity_travel_as_json(http: httpx.Client) -> None:
    body = {"inputs": [{"name": "v", "shape": [3], "datatype": "FP64", "data": [1.0, "x", 2]}]}
    assert http.post("/v2/models/echo/infer", json=body).status_code == 400
    text = '{"inputs": [{"name": "v", "shape": [2], "datatype": "FP64", "data": [NaN, Infinity]}]}'
    response = http.post("/v2/models/echo/infer", content=text)
    assert response.status_code == 200 and '"data":[NaN,Infinity]' in response.text


def test_request_ids(http: httpx.Client) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    from_header = http.post("/v2/models/scale/infer", json=body, headers={"x-request-id": "h-1"})
    assert from_header.headers["x-request-id"] == "h-1" and from_header.json()["id"] == "h-1"
    from_body = http.post(
        "/v2/models/scale/infer", json={**body, "id": "b-1"}, headers={"x-request-id": "h-2"}
    )
    assert from_body.headers["x-request-id"] == "b-1" and from_body.json()["id"] == "b-1"
    generated = http.post("/v2/models/scale/infer", json=body)
    assert len(generated.headers["x-request-id"]) == 32
    assert generated.json()["id"] == generated.headers["x-request-id"]
    failed = http.post("/v2/models/nope/infer", json=body, headers={"x-request-id": "h-3"})
    assert failed.headers["x-request-id"] == "h-3"
    too_long = http.post("/v2/models/scale/infer", json={**body, "id": "b" * 257})
    assert too_long.status_code == 400 and "x-request-id" not in too_long.headers
    assert too_long.json() == {"error": "request id: 257 characters, more than the 256 allowed"}


# Bad input ------------------------------------------------------------------------------

X = {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/scale/infer", b'{"inputs": [', 400, "request body is not valid JSON"),
        ("/v2/models/scale/infer", {"inputs": "x"}, 400, "inputs: Input should be a valid array"),
        ("/v2/models/nope/infer", {"inputs": [X]}, 404, "model nope not found"),
        (
            "/v2/models/scale/versions/3/infer",
            {"inputs": [X]},
            404,
            "model scale version 3 not found",
        ),
        (
            "/v2/models/scale/infer",
            {"inputs": [X, {**X, "name": "z"}]},
            400,
            "model scale: unknown input 'z'; it takes 'x'",
        ),
        ("/v2/models/scale/infer", {"inputs": [{**X, "name": "w"}]}, 400, "missing input 'x'"),
        (
            "/v2/models/scale/infer",
            {"inputs": [{**X, "datatype": "INT32"}]},
            400,
            "model scale: input 'x': expected datatype FP32, got INT32",
        ),
        (
            "/v2/models/scale/infer",
            {"inputs": [{**X, "datatype": "FP33"}]},
            400,
            "inputs[0].datatype: unknown datatype 'FP33'",
        ),
        (
            "/v2/models/scale/infer",
            {"inputs": [{**X, "shape": [2, 2]}]},
            400,
            "inputs[0].data: has 6 elements but shape [2, 2] needs 4",
        ),
        (
            "/v2/models/upper/infer",
            {
                "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
                "outputs": [{"name": "nope"}],
            },
            400,
            "model upper: unknown output 'nope'",
        ),
        (
            "/v2/models/echo/infer",
            {"inputs": [{**X, "shape": [2**70, 0], "data": []}]},
            400,
            f"inputs[0].shape: shape [{2**70}, 0] is larger than any tensor can be",
        ),
        ("/v2/models/boom/infer", {"inputs": [X]}, 500, "raised RuntimeError: the model fell over"),
        ("/v2/nowhere", {}, 404, "Not Found"),
    ],
    ids=[
        "malformed-json",
        "not-a-request",
        "unknown-model",
        "unknown-version",
        "unknown-input",
        "missing-input",
        "wrong-datatype",
        "unknown-datatype",
        "shape-vs-data",
        "unknown-output",
        "huge-empty-shape",
        "model-raised",
        "unknown-route",
    ],
)
def test_bad_requests_get_a_status_and_an_oip_error(
    http: httpx.Client, path: str, body: Any, status: int, message: str
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = http.post(path, content=content)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_tritonclient_surfaces_the_error(triton: httpclient.InferenceServerClient) -> None:
    x = np.zeros((2, 3), dtype=np.int32)
    with pytest.raises(InferenceServerException) as caught:
        triton.infer("scale", [infer_input("x", x, "INT32", True)])
    assert caught.value.status() == "400"
    assert "expected datatype FP32, got INT32" in caught.value.message()


@pytest.mark.parametrize(
    ("header_length", "tail", "message"),
    [
        ("nine", b"", "Inference-Header-Content-Length: 'nine' is not a number of bytes"),
        ("100000", b"", "is outside the body"),
        (None, b"\x00" * 8, "declare 24 bytes (binary_data_size) but 8 follow the JSON header"),
    ],
)
def test_inconsistent_binary_bodies(
    http: httpx.Client, header_length: str | None, tail: bytes, message: str
) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 24},
                }
            ]
        }
    ).encode()
    length = header_length or str(len(header))
    response = http.post(
        "/v2/models/scale/infer",
        content=header + tail,
        headers={"inference-header-content-length": length},
    )
    assert response.status_code == 400 and message in response.json()["error"]


def test_binary_input_of_a_shape_no_tensor_can_have(http: httpx.Client) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2**70, 0],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 0},
                }
            ]
        }
    ).encode()
    response = http.post(
        "/v2/models/echo/infer",
        content=header,
        headers={"inference-header-content-length": str(len(header))},
    )
    assert response.status_code == 400
    assert response.json()["error"] == (
        f"inputs[0].shape: shape [{2**70}, 0] is larger than any tensor can be"
    )


def test_binary_data_not_matching_the_shape(http: httpx.Client) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    response = http.post(
        "/v2/models/scale/infer",
        content=header + b"\x00" * 8,
        headers={"inference-header-content-length": str(len(header))},
    )
    assert response.status_code == 400
    assert (
        "input 'x': raw contents hold 8 bytes but shape [2, 3] of FP32 needs 24"
        in response.json()["error"]
    )


# One caller does not stall the others ---------------------------------------------------


def test_replies_are_the_json_form_written_straight_from_the_arrays() -> None:
    """A reply holds what ``response_to_json`` says, in the same key order; long data is
    written in slices, non-finite floats as literals, FP32 as its shortest decimal."""
    outputs = {
        "y": np.linspace(-1, 1, 600_000, dtype=np.float32).reshape(2, -1),  # several slices
        "k": np.arange(3, dtype=np.int64),
        "z": np.array([0.1], dtype=np.float32),
        "h": np.array([0.5, np.nan, -np.inf], dtype=np.float16),
        "b": np.array([True, False]),
        "t": np.array([b"a", b"\xff"] * 20_000, dtype=object),
    }
    response = encode_response("m", outputs, id="r-1", model_version="1")
    response.outputs[1].parameters["unit"].double_param = float("nan")
    content, header_length = render_infer_response(response, OutputForm())
    assert header_length is None
    assert b'"data":[0.1]' in content and b'"data":[0.5,NaN,-Infinity]' in content
    body, expected = json.loads(content), response_to_json(response)
    assert list(body) == list(expected)
    for got, want in zip(body["outputs"], expected["outputs"], strict=True):
        assert list(got) == list(want)
        assert {k: v for k, v in got.items() if k not in ("data", "parameters")} == {
            k: v for k, v in want.items() if k not in ("data", "parameters")
        }
        assert json.dumps(got.get("parameters")) == json.dumps(want.get("parameters"))
        dtype = object if got["datatype"] == "BYTES" else outputs[got["name"]].dtype
        np.testing.assert_array_equal(
            np.array(got["data"], dtype=dtype), np.array(want["data"], dtype=dtype)
        )
    content, header_length = render_infer_response(response, OutputForm(per_output={"k": True}))
    assert header_length is not None
    header = json.loads(content[:header_length])
    assert [t["name"] for t in header["outputs"]] == ["y", "k", "z", "h", "b", "t"]
    assert "data" not in header["outputs"][1] and len(header["outputs"][0]["data"]) == 600_000
    assert header["outputs"][1]["parameters"]["binary_data_size"] == 24
    assert content[header_length:] == outputs["k"].tobytes()


def _large_fp32_json_reply() -> tuple[bytes, dict[str, str]]:
    # 8 MB in, written back as a JSON list of 2 million numbers.
    x = np.linspace(0, 1, 2_000_000, dtype=np.float32)
    return _binary_request("x", x, "FP32", binary_output=False)


def _large_bytes_request() -> tuple[bytes, dict[str, str]]:
    # A million BYTES elements: each is split out of the body, then written back, one by one.
    text = np.array([b"abcd"] * 1_000_000, dtype=object)
    return _binary_request("text", text, "BYTES", binary_output=True)


def _binary_request(
    name: str, array: np.ndarray, datatype: str, *, binary_output: bool
) -> tuple[bytes, dict[str, str]]:
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=True)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary_output)]
    body, header_length = httpclient.InferenceServerClient.generate_request_body(
        [tensor], outputs=outputs
    )
    return body, {"inference-header-content-length": str(header_length)}


@pytest.mark.parametrize(
    "make_request", [_large_fp32_json_reply, _large_bytes_request], ids=["fp32", "bytes"]
)
def test_a_large_request_does_not_stall_health_checks(
    served: Served, http: httpx.Client, make_request: Any
) -> None:
    """Large bodies are decoded, and large replies written, off the event loop: health
    checks keep being answered meanwhile, not only after the large request is done."""
    content, headers = make_request()
    done = threading.Event()
    answered: list[float] = []

    def poll() -> None:
        with httpx.Client(base_url=served.http_url, timeout=60) as client:
            while not done.is_set():
                assert client.get("/v2/health/live").status_code == 200
                answered.append(time.perf_counter())
                time.sleep(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    while not answered:
        time.sleep(0.01)
    # The longest wait for a health answer while a large request ran, relative to how long
    # it ran. On the loop, its decoding and its reply's encoding would hold every health
    # check until done: more than half of the request's time, every time. Off the loop they
    # share the GIL with the checks and with this test's threads, so on a loaded machine a
    # check can still wait a while now and then: the best of three requests is judged.
    shares = []
    for _ in range(3):
        start = time.perf_counter()
        response = http.post("/v2/models/echo/infer", content=content, headers=headers)
        end = time.perf_counter()
        assert response.status_code == 200
        during = [t for t in answered if start < t < end]
        shares.append(float(np.diff([start, *during, end]).max()) / (end - start))
    done.set()
    poller.join(30)
    assert min(shares) < 0.4, f"health waited {[f'{s:.2f}' for s in shares]} of a request"


# Repository -----------------------------------------------------------------------------


def test_repository_index_unload_and_load(
    triton: httpclient.InferenceServerClient, http: httpx.Client
) -> None:
    index = {entry["name"]: entry for entry in triton.get_model_repository_index()}
    assert index["upper"] == {"name": "upper", "version": "1", "state": "READY", "reason": ""}
    assert index["echo-pipe"]["state"] == "READY"
    triton.unload_model("upper")
    try:
        assert not triton.is_model_ready("upper")
        body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
        response = http.post("/v2/models/upper/infer", json=body)
        assert (
            response.status_code == 503 and "model upper is not ready" in response.json()["error"]
        )
        ready = http.post("/v2/repository/index", json={"ready": True}).json()
        assert "upper" not in [entry["name"] for entry in ready]
    finally:
        triton.load_model("upper")
    assert triton.is_model_ready("upper")
    with pytest.raises(InferenceServerException, match="model nope not found"):
        triton.load_model("nope")


def test_repository_changes_are_refused_without_the_flag(
    spec_and_models: tuple[PipelineSpec, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, _ = spec_and_models
    with (
        running_server([spec]) as server,
        httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as http,
    ):
        for action in ("unload", "load"):
            response = http.post(f"/v2/repository/models/upper/{action}")
            assert response.status_code == 403, action
            error = response.json()["error"]
            assert error.startswith(f"cannot {action} model upper: ")
            assert "--allow-repository-changes" in error
        grpc_client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        for call in (grpc_client.unload_model, grpc_client.load_model):
            with pytest.raises(InferenceServerException, match="--allow-repository-changes") as e:
                call("upper")
            assert e.value.status() == "StatusCode.PERMISSION_DENIED"
        assert http.get("/v2/models/upper/ready").status_code == 200
        # The index only reads: it stays open.
        index = http.post("/v2/repository/index", json={"ready": True})
        assert "upper" in [entry["name"] for entry in index.json()]

    monkeypatch.setenv("STREAMDAG_SERVE_ALLOW_REPOSITORY_CHANGES", "true")
    get_settings.cache_clear()
    try:
        with running_server([spec]) as server:
            url = f"http://127.0.0.1:{server.http_port}/v2"
            assert httpx.post(f"{url}/repository/models/upper/unload").status_code == 200
            assert httpx.get(f"{url}/models/upper/ready").status_code == 400
            assert httpx.post(f"{url}/repository/models/upper/load").status_code == 200
    finally:
        get_settings.cache_clear()
