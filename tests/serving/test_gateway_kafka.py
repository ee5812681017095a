"""Pipelines through the front doors over the real broker: request-reply, several
gateways side by side, timeouts, error replies, jobs across a gateway restart, and bad
input that never reaches Kafka."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from kafka_support import run_pipeline
from server_support import running_server
from tritonclient.utils import InferenceServerException

from streamdag.pipeline import PipelineSpec, compile_plan, load_spec
from streamdag.serving import KafkaGateway, Server

pytestmark = pytest.mark.kafka

SPEC = """
name: "{name}"
guarantee: exactly_once
partitions: 4
timeout_ms: 20000
models:
  double: {{runtime: python, handler: "gateway_models:double"}}
  add-one: {{runtime: python, handler: "gateway_models:add_one"}}
  slow: {{runtime: python, handler: "gateway_models:slow"}}
{models}
steps:
  - {{name: double, model: double}}
  - {{name: add-one, model: add-one, inputs: [double.outputs]}}
{extra}
"""


@pytest.fixture
def pipeline(tmp_path: Path, unique_name: Callable[[str], str]) -> Callable[..., PipelineSpec]:
    def make(extra: str = "", models: str = "") -> PipelineSpec:
        shutil.copy(Path(__file__).with_name("gateway_models.py"), tmp_path / "gateway_models.py")
        path = tmp_path / "pipeline.yaml"
        path.write_text(SPEC.format(name=unique_name("gw"), extra=extra, models=models))
        return load_spec(path)

    return make


@contextmanager
def gateway_server(spec: PipelineSpec, bootstrap: str) -> Iterator[Server]:
    with running_server([spec], gateway=KafkaGateway([compile_plan(spec)], bootstrap)) as server:
        yield server


def body(rid: str, x: list[float], **parameters: object) -> dict[str, object]:
    return {
        "id": rid,
        "parameters": parameters,
        "inputs": [{"name": "x", "shape": [1, len(x)], "datatype": "FP32", "data": x}],
    }


def test_tritonclient_gets_pipeline_results(
    bootstrap: str, pipeline: Callable[..., PipelineSpec]
) -> None:
    spec = pipeline()
    with run_pipeline(spec, bootstrap), gateway_server(spec, bootstrap) as server:
        x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
        text = np.array([[b"chest pain", b"ok"]], dtype=object)

        http = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        inputs = [
            triton_http.InferInput("x", [1, 3], "FP32"),
            triton_http.InferInput("text", [1, 2], "BYTES"),
        ]
        inputs[0].set_data_from_numpy(x)
        inputs[1].set_data_from_numpy(text)
        result = http.infer(spec.name, inputs, request_id="http-1")
        np.testing.assert_array_equal(result.as_numpy("x"), x * 2 + 1)
        assert result.as_numpy("text").tolist() == [[b"CHEST PAIN", b"OK"]]
        assert result.get_response()["id"] == "http-1"

        grpc = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        ginputs = [
            triton_grpc.InferInput("x", [1, 3], "FP32"),
            triton_grpc.InferInput("text", [1, 2], "BYTES"),
        ]
        ginputs[0].set_data_from_numpy(x)
        ginputs[1].set_data_from_numpy(text)
        gresult = grpc.infer(spec.name, ginputs, request_id="grpc-1")
        np.testing.assert_array_equal(gresult.as_numpy("x"), x * 2 + 1)
        assert gresult.as_numpy("text").tolist() == [[b"CHEST PAIN", b"OK"]]
        # Readiness follows the steps' consumer groups, read every moment or two.
        deadline = time.monotonic() + 10
        while not grpc.is_model_ready(spec.name):
            assert time.monotonic() < deadline, "the pipeline never said it was ready"
            time.sleep(0.2)
        assert http.get_model_metadata(spec.name)["name"] == spec.name


def test_two_gateways_each_get_their_own_replies(
    bootstrap: str, pipeline: Callable[..., PipelineSpec]
) -> None:
    spec = pipeline()
    with (
        run_pipeline(spec, bootstrap),
        gateway_server(spec, bootstrap) as one,
        gateway_server(spec, bootstrap) as two,
    ):

        def call(args: tuple[Server, int]) -> tuple[int, str, list[float]]:
            server, i = args
            url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"
            response = httpx.post(url, json=body(f"r{i}", [float(i)]), timeout=30)
            data = response.json()["outputs"][0]["data"] if response.status_code == 200 else []
            return response.status_code, response.headers.get("x-request-id", ""), data

        jobs = [(one if i % 2 else two, i) for i in range(100, 160)]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, jobs))
    assert [a[0] for a in answers] == [200] * 60
    assert [a[1] for a in answers] == [f"r{i}" for i in range(100, 160)]
    assert [a[2] for a in answers] == [[2.0 * i + 1] for i in range(100, 160)]


def test_timeout_names_the_request(bootstrap: str, pipeline: Callable[..., PipelineSpec]) -> None:
    spec = pipeline("  - {name: slow, model: slow, inputs: [add-one.outputs]}")
    with run_pipeline(spec, bootstrap), gateway_server(spec, bootstrap) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"
        # Triton's timeout parameter is in microseconds: 0.3 s.
        response = httpx.post(url, json=body("late-7", [1.0], timeout=300_000), timeout=30)
    assert response.status_code == 504
    assert "late-7" in response.json()["error"]
    assert "microseconds" not in response.json()["error"]
    assert response.headers["x-request-id"] == "late-7"


def test_a_timeout_given_as_seconds_is_answered_with_its_unit(
    bootstrap: str, pipeline: Callable[..., PipelineSpec]
) -> None:
    """``timeout: 30`` meant as seconds is 30 µs in OIP/Triton terms: the 504 says so."""
    spec = pipeline()
    with gateway_server(spec, bootstrap) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"
        response = httpx.post(url, json=body("soon-1", [1.0], timeout=30), timeout=30)
    assert response.status_code == 504
    assert response.json()["error"].endswith(
        "(parameters.timeout is in microseconds, as in Triton: 30 means 30 µs)"
    )


def test_error_reply_names_the_failing_step(
    bootstrap: str, pipeline: Callable[..., PipelineSpec]
) -> None:
    spec = pipeline()
    with run_pipeline(spec, bootstrap), gateway_server(spec, bootstrap) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"
        response = httpx.post(url, json=body("bad-13", [13.0]), timeout=30)
    assert response.status_code == 500
    error = response.json()["error"]
    assert "double" in error and "double cannot take 13" in error


def test_job_result_survives_a_gateway_restart(
    bootstrap: str, pipeline: Callable[..., PipelineSpec]
) -> None:
    spec = pipeline()
    with gateway_server(spec, bootstrap) as first:
        base = f"http://127.0.0.1:{first.http_port}/v2/pipelines/{spec.name}/jobs"
        accepted = httpx.post(base, json=body("job-1", [4.0]), timeout=30)
        assert accepted.status_code == 202 and accepted.json()["id"] == "job-1"
        assert httpx.get(f"{base}/job-1", timeout=30).status_code == 202  # no workers yet
    with run_pipeline(spec, bootstrap), gateway_server(spec, bootstrap) as second:
        base = f"http://127.0.0.1:{second.http_port}/v2/pipelines/{spec.name}/jobs"
        for _ in range(100):
            answer = httpx.get(f"{base}/job-1", timeout=30)
            if answer.status_code != 202:
                break
        assert answer.status_code == 200
        assert answer.json()["outputs"][0]["data"] == [9.0]
        assert httpx.get(f"{base}/no-such-job", timeout=30).status_code == 404


def test_bad_input_never_reaches_kafka(
    bootstrap: str, pipeline: Callable[..., PipelineSpec]
) -> None:
    from kafka_support import read_topic

    spec = pipeline("  - {name: side, model: add-one, inputs: [pipeline.inputs.x]}")
    with gateway_server(spec, bootstrap) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"
        wrong_name = httpx.post(
            url,
            json={"inputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [1]}]},
            timeout=30,
        )
        assert wrong_name.status_code == 400
        assert "missing input 'x', which step side reads" in wrong_name.json()["error"]
        too_big = httpx.post(
            url,
            content=b"0" * (65 * 1024 * 1024),
            timeout=60,
            headers={"content-type": "application/json"},
        )
        assert too_big.status_code == 413
        bad = {
            "not json": (b"{nope", 400),
            "shape vs data": (
                b'{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1]}]}',
                400,
            ),
            "unknown datatype": (
                b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP99","data":[1]}]}',
                400,
            ),
            "no inputs": (b'{"inputs":[]}', 400),
            "huge empty shape": (
                b'{"inputs":[{"name":"x","shape":[1180591620717411303424,0],'
                b'"datatype":"FP32","data":[]}]}',
                400,
            ),
            "booleans as FP32": (
                b'{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[true,false,1,2]}]}',
                400,
            ),
            "id too long": (
                b'{"id":"' + b"i" * 257 + b'","inputs":[{"name":"x","shape":[1],'
                b'"datatype":"FP32","data":[1]}]}',
                400,
            ),
        }
        for name, (content, status) in bad.items():
            response = httpx.post(
                url, content=content, timeout=30, headers={"content-type": "application/json"}
            )
            assert response.status_code == status, name
            assert response.json()["error"], name
        missing = httpx.post(
            f"http://127.0.0.1:{server.http_port}/v2/pipelines/nope/infer",
            json=body("x", [1.0]),
            timeout=30,
        )
        assert missing.status_code == 404

        client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        x = triton_grpc.InferInput("x", [1, 1], "FP32")
        x.set_data_from_numpy(np.ones((1, 1), dtype=np.float32))
        with pytest.raises(InferenceServerException) as caught:
            # Its reply trailer would overflow the client's 8 KB metadata limit.
            client.infer(spec.name, [x], request_id="g" * 8200)
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert caught.value.message() == "request id: 8200 characters, more than the 256 allowed"
        client.close()
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            with pytest.raises(grpc.RpcError) as raised:
                infer(b"\xff\xff\xff", timeout=30)
            error: Any = raised.value
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert read_topic(bootstrap, f"streamdag.{spec.name}.inputs", until=1, timeout=3) == []


def test_inputs_a_python_model_declares_are_checked_at_the_door(
    bootstrap: str, pipeline: Callable[..., PipelineSpec]
) -> None:
    """A function handler declaring ``inputs:`` in the spec: a request without them, or
    with the wrong datatype, is refused before Kafka, naming the model and the step."""
    from kafka_support import read_topic

    spec = pipeline(
        "  - {name: checked, model: checked-double}",
        models='  checked-double: {runtime: python, handler: "gateway_models:double",'
        " inputs: [{name: x, datatype: FP32, shape: [-1, -1]}]}",
    )
    with gateway_server(spec, bootstrap) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"
        typo = {"inputs": [{"name": "xx", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}
        answer = httpx.post(url, json=typo, timeout=30)
        assert answer.status_code == 400
        assert answer.json()["error"] == (
            f"pipeline {spec.name}: missing input 'x' of model checked-double (step checked); "
            "the request has 'xx'"
        )
        ints = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "INT64", "data": [1]}]}
        answer = httpx.post(url, json=ints, timeout=30)
        assert answer.status_code == 400
        assert "input 'x': expected datatype FP32, got INT64" in answer.json()["error"]
        metadata = httpx.get(
            f"http://127.0.0.1:{server.http_port}/v2/models/checked-double", timeout=30
        ).json()
        assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]
    assert read_topic(bootstrap, f"streamdag.{spec.name}.inputs", until=1, timeout=3) == []


CHECKED = """
name: "{name}"
version: 2
partitions: 2
timeout_ms: 20000
models:
  checked-double:
    runtime: python
    handler: "gateway_models:double"
    inputs: [{{name: x, datatype: FP32, shape: [-1, -1]}}]
    outputs: [x]
steps:
  - {{name: checked, model: checked-double}}
"""


@pytest.fixture
def checked_pipeline(tmp_path: Path, unique_name: Callable[[str], str]) -> PipelineSpec:
    """A pipeline (version 2) whose one model declares its input x (FP32) and output x."""
    shutil.copy(Path(__file__).with_name("gateway_models.py"), tmp_path / "gateway_models.py")
    path = tmp_path / "checked.yaml"
    path.write_text(CHECKED.format(name=unique_name("gw")))
    return load_spec(path)


def test_what_the_workers_would_refuse_is_refused_at_the_door(
    bootstrap: str, checked_pipeline: PipelineSpec
) -> None:
    """Extra inputs, unknown requested outputs, versions the pipeline does not have and
    booleans as numbers are refused on every route and both doors, as the model route
    refuses them; nothing is produced. The pipeline's own version is taken."""
    from kafka_support import read_topic

    spec = checked_pipeline
    x = {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}
    extra = {"inputs": [x, {**x, "name": "y"}]}
    unknown_output = {"inputs": [x], "outputs": [{"name": "z"}]}
    booleans = {"inputs": [{**x, "shape": [4], "data": [True, False, 1, 2]}]}
    with gateway_server(spec, bootstrap) as server:
        base = f"http://127.0.0.1:{server.http_port}/v2"
        routes = [f"{base}/pipelines/{spec.name}/infer", f"{base}/models/{spec.name}/infer"]
        for url in routes:
            answer = httpx.post(url, json=extra, timeout=30)
            assert answer.status_code == 400
            assert answer.json()["error"] == (
                f"pipeline {spec.name}: unknown input 'y' for model checked-double "
                "(step checked), which takes 'x'"
            )
            answer = httpx.post(url, json=unknown_output, timeout=30)
            assert answer.status_code == 400
            assert answer.json()["error"] == (
                f"pipeline {spec.name}: unknown output 'z'; it returns 'x'"
            )
            answer = httpx.post(url, json=booleans, timeout=30)
            assert answer.status_code == 400
            assert answer.json()["error"] == "inputs[0].data: FP32 takes numbers, got booleans"
        answer = httpx.post(
            f"{base}/models/{spec.name}/versions/AAA/infer", json={"inputs": [x]}, timeout=30
        )
        assert answer.status_code == 404
        assert answer.json()["error"] == f"pipeline {spec.name} version AAA not found"

        client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        tensors = [triton_grpc.InferInput(name, [1, 2], "FP32") for name in ("x", "y")]
        for tensor in tensors:
            tensor.set_data_from_numpy(np.ones((1, 2), dtype=np.float32))
        attempts = [
            ("INVALID_ARGUMENT", "unknown input 'y'", {"inputs": tensors}),
            (
                "INVALID_ARGUMENT",
                "unknown output 'z'",
                {"inputs": tensors[:1], "outputs": [triton_grpc.InferRequestedOutput("z")]},
            ),
            ("NOT_FOUND", "version 7 not found", {"inputs": tensors[:1], "model_version": "7"}),
        ]
        for status, message, options in attempts:
            with pytest.raises(InferenceServerException) as caught:
                client.infer(spec.name, **options)
            assert caught.value.status() == f"StatusCode.{status}"
            assert message in caught.value.message()
        client.close()
    assert read_topic(bootstrap, f"streamdag.{spec.name}.inputs", until=1, timeout=3) == []

    with run_pipeline(spec, bootstrap), gateway_server(spec, bootstrap) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/models/{spec.name}/versions/2/infer"
        answer = httpx.post(url, json={"inputs": [x], "outputs": [{"name": "x"}]}, timeout=30)
        assert answer.status_code == 200
        assert answer.json()["outputs"][0]["data"] == [2, 4]


def test_requests_too_large_for_a_kafka_record_are_refused_at_the_door(
    bootstrap: str, pipeline: Callable[..., PipelineSpec]
) -> None:
    """The server takes bodies up to 64 MB, but a record of the inputs topic holds 1 MB
    (librdkafka's message.max.bytes): larger requests are 413 / RESOURCE_EXHAUSTED at once,
    naming the limit and the payload store that lifts it, and nothing is produced. One
    that fits goes through."""
    from kafka_support import read_topic

    spec = pipeline()
    too_large = (
        rf"^pipeline {spec.name}: the request makes a Kafka record of \d+ bytes, "
        r"over the limit of 1000000 bytes \(message.max.bytes\); a payload store carries "
        r"larger requests \(--payload-store or STREAMDAG_PAYLOAD_STORE\)$"
    )
    with gateway_server(spec, bootstrap) as server:
        http = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        grpc_client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        for megabytes in (5, 20):
            x = np.zeros((1, megabytes * 250_000), dtype=np.float32)
            rest_input = triton_http.InferInput("x", list(x.shape), "FP32")
            rest_input.set_data_from_numpy(x)
            started = time.monotonic()
            with pytest.raises(InferenceServerException) as caught:
                http.infer(spec.name, [rest_input])
            assert time.monotonic() - started < 10  # refused at once, not after the 20 s timeout
            assert caught.value.status() == "413"
            assert re.match(too_large, caught.value.message())
            grpc_input = triton_grpc.InferInput("x", list(x.shape), "FP32")
            grpc_input.set_data_from_numpy(x)
            with pytest.raises(InferenceServerException) as caught:
                grpc_client.infer(spec.name, [grpc_input])
            assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
            assert re.match(too_large, caught.value.message())
        as_json = body("json-1", [0.5] * 250_000)  # about 1 MB of raw FP32 once decoded
        answer = httpx.post(
            f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/jobs",
            json=as_json,
            timeout=30,
        )
        assert answer.status_code == 413 and re.match(too_large, answer.json()["error"])
        http.close()
        grpc_client.close()
    assert read_topic(bootstrap, f"streamdag.{spec.name}.inputs", until=1, timeout=3) == []

    with run_pipeline(spec, bootstrap), gateway_server(spec, bootstrap) as server:
        http = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        x = np.full((1, 225_000), 0.25, dtype=np.float32)  # 900 KB fits
        fits = triton_http.InferInput("x", list(x.shape), "FP32")
        fits.set_data_from_numpy(x)
        result = http.infer(
            spec.name, [fits], outputs=[triton_http.InferRequestedOutput("x", binary_data=True)]
        )
        np.testing.assert_array_equal(result.as_numpy("x"), x * 2 + 1)
        http.close()
