"""Runtime ``oip``: what is retried and what is not, against small scripted OIP servers.

Each server (a gRPC one and a REST one, on free ports) fails its first calls in a chosen
way and then answers ``y = 2 * x``, so the retry behaviour is exact, not timing-dependent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
import pytest

from streamdag.broker import free_port
from streamdag.errors import InvalidInput, ModelError
from streamdag.protocol import (
    decode_request,
    encode_response,
    inference_pb2,
    inference_pb2_grpc,
    request_from_json,
    response_to_json,
)
from streamdag.runtimes import OipModel, OipModelSpec

# Waits out retries and deadlines: slow for `make test-fast`.
pytestmark = pytest.mark.slow

X = np.arange(6, dtype=np.float32).reshape(2, 3)
TENSOR: dict[str, Any] = {"name": "x", "datatype": "FP32", "shape": [-1, 3]}


@dataclass
class Script:
    """How the server misbehaves: ``failures`` infer calls answered with ``error``, the
    first ``not_ready`` readiness checks answered "not ready"; and what it saw."""

    failures: int = 0
    error: str = "unavailable"  # or "invalid"
    not_ready: int = 0
    infer_calls: int = 0
    ready_calls: int = 0

    def ready(self) -> bool:
        self.ready_calls += 1
        return self.ready_calls > self.not_ready

    def fail(self) -> bool:
        self.infer_calls += 1
        return self.infer_calls <= self.failures


class Servicer(inference_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def ModelMetadata(self, request: Any, context: Any) -> Any:
        tensor = inference_pb2.ModelMetadataResponse.TensorMetadata
        return inference_pb2.ModelMetadataResponse(
            name=request.name,
            platform="scripted",
            inputs=[tensor(**TENSOR)],
            outputs=[tensor(**{**TENSOR, "name": "y"})],
        )

    def ModelReady(self, request: Any, context: Any) -> Any:
        return inference_pb2.ModelReadyResponse(ready=self.script.ready())

    def ModelInfer(self, request: Any, context: Any) -> Any:
        if self.script.fail():
            status = grpc.StatusCode.UNAVAILABLE
            if self.script.error == "invalid":
                status = grpc.StatusCode.INVALID_ARGUMENT
            context.abort(status, f"scripted {self.script.error}")
        x = decode_request(request)["x"]
        return encode_response(request.model_name, {"y": x * 2}, id=request.id)


def rest_handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith("/ready"):
                ready = script.ready()
                self._answer(200 if ready else 400, {} if ready else {"error": "not ready"})
            else:
                outputs = [{**TENSOR, "name": "y"}]
                meta = {"name": "m", "platform": "scripted", "inputs": [TENSOR], "outputs": outputs}
                self._answer(200, meta)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            if script.fail():
                status = 400 if script.error == "invalid" else 503
                self._answer(status, {"error": f"scripted {script.error}"})
                return
            x = decode_request(request_from_json(body))["x"]
            self._answer(200, response_to_json(encode_response("m", {"y": x * 2})))

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output clean

    return Handler


Start = Callable[..., str]


@pytest.fixture(params=["grpc", "rest"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def serve(protocol: str) -> Iterator[Start]:
    """``serve(script, port=0)`` starts a scripted server of ``protocol``; returns its url."""
    stops: list[Callable[[], None]] = []

    def start(script: Script, port: int = 0) -> str:
        if protocol == "grpc":
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            register: Any = inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server
            register(Servicer(script), server)
            port = server.add_insecure_port(f"127.0.0.1:{port}")
            server.start()
            stops.append(lambda: server.stop(None).wait())
            return f"127.0.0.1:{port}"
        http = ThreadingHTTPServer(("127.0.0.1", port), rest_handler(script))
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()

        def stop() -> None:
            http.shutdown()
            http.server_close()
            thread.join(10)

        stops.append(stop)
        return f"http://127.0.0.1:{http.server_address[1]}"

    yield start
    for stop in stops:
        stop()


def loaded(protocol: str, url: str, **options: Any) -> OipModel:
    spec = OipModelSpec.model_validate(
        {"runtime": "oip", "protocol": protocol, "url": url, "model": "m", **options}
    )
    model = OipModel("remote", spec)
    model.load()
    return model


def test_unavailable_is_retried_with_backoff(serve: Start, protocol: str) -> None:
    script = Script(failures=2)
    model = loaded(protocol, serve(script), attempts=3, backoff_ms=50)
    began = time.monotonic()
    outputs = model.predict({"x": X})
    np.testing.assert_array_equal(outputs["y"], X * 2)
    assert script.infer_calls == 3
    assert time.monotonic() - began >= 0.05 + 0.1  # waited 50 ms, then 100 ms
    model.unload()


def test_retries_are_bounded(serve: Start, protocol: str) -> None:
    script = Script(failures=10)
    model = loaded(protocol, serve(script), attempts=3, backoff_ms=1)
    with pytest.raises(ModelError) as info:
        model.predict({"x": X})
    assert "scripted unavailable (gave up after 3 attempts)" in str(info.value)
    assert script.infer_calls == 3
    model.unload()


def test_retries_stop_at_the_deadline(serve: Start, protocol: str) -> None:
    script = Script(failures=100)
    model = loaded(protocol, serve(script), attempts=20, backoff_ms=500, timeout_ms=2000)
    with pytest.raises(ModelError, match="gave up after 3 attempts"):
        model.predict({"x": X})  # waits of 0.5 + 1 s fit in 2 s; a third of 2 s does not
    assert script.infer_calls == 3
    model.unload()


def test_rejected_input_is_not_retried(serve: Start, protocol: str) -> None:
    script = Script(failures=1, error="invalid")
    model = loaded(protocol, serve(script), attempts=3, backoff_ms=1)
    with pytest.raises(InvalidInput, match="scripted invalid"):
        model.predict({"x": X})
    assert script.infer_calls == 1
    np.testing.assert_array_equal(model.predict({"x": X})["y"], X * 2)
    model.unload()


def test_load_waits_until_the_remote_model_is_ready(serve: Start, protocol: str) -> None:
    script = Script(not_ready=2)
    model = loaded(protocol, serve(script), attempts=3, backoff_ms=1)
    assert script.ready_calls == 3
    assert model.metadata().platform == "scripted"
    model.unload()


def test_load_gives_up_on_a_model_that_stays_not_ready(serve: Start, protocol: str) -> None:
    script = Script(not_ready=10)
    with pytest.raises(ModelError, match="is not ready \\(gave up after 2 attempts\\)"):
        loaded(protocol, serve(script), attempts=2, backoff_ms=1)


def test_a_server_that_starts_late_is_waited_for(serve: Start, protocol: str) -> None:
    port = free_port()
    url = f"127.0.0.1:{port}" if protocol == "grpc" else f"http://127.0.0.1:{port}"
    late = threading.Timer(0.3, serve, args=(Script(),), kwargs={"port": port})
    late.start()
    # Up to 8 attempts wait 50 ms, 100 ms... 6.4 s in all: far longer than the 0.3 s.
    model = loaded(protocol, url, attempts=8, backoff_ms=50)
    late.join()
    np.testing.assert_array_equal(model.predict({"x": X})["y"], X * 2)
    model.unload()
