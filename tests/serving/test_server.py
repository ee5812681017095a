"""The composition root and the CLI: limits, ports, start-up failures, graceful stop."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from streamdag.broker import free_port
from streamdag.errors import ConfigError
from streamdag.pipeline import PipelineSpec, compile_plan, parse_spec
from streamdag.protocol import encode_request, inference_pb2_grpc
from streamdag.serving import DataPlane, Server

from .conftest import running_server
from .fake_gateway import FakeGateway

LIMIT = 4096


@pytest.fixture(scope="module")
def small(spec_and_models: tuple[PipelineSpec, ModuleType]) -> Iterator[Server]:
    with running_server([spec_and_models[0]], max_body_bytes=LIMIT) as server:
        yield server


def big_body() -> bytes:
    data = [0.0] * 3 * 400
    inputs = [{"name": "x", "shape": [400, 3], "datatype": "FP32", "data": data}]
    return json.dumps({"inputs": inputs}).encode()


def test_rest_bodies_over_the_limit_are_refused(small: Server) -> None:
    url = f"http://127.0.0.1:{small.http_port}/v2/models/scale/infer"
    body = big_body()
    response = httpx.post(url, content=body)
    assert response.status_code == 413
    assert response.json() == {
        "error": f"request body of {len(body)} bytes exceeds the limit of {LIMIT} bytes"
    }
    # Without Content-Length (chunked), the limit holds while reading.
    chunked = httpx.post(url, content=iter([body[:3000], body[3000:]]))
    assert chunked.status_code == 413 and "exceeds the limit of 4096 bytes" in chunked.text
    # And for what a compressed body inflates to.
    inflated = httpx.post(url, content=gzip.compress(body), headers={"content-encoding": "gzip"})
    assert inflated.status_code == 413 and "exceeds the limit of 4096 bytes" in inflated.text


def test_tritonclient_http_sees_413(small: Server) -> None:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{small.http_port}")
    x = httpclient.InferInput("x", [400, 3], "FP32")
    x.set_data_from_numpy(np.zeros((400, 3), dtype=np.float32))
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.infer("scale", [x])
    finally:
        client.close()
    assert caught.value.status() == "413" and "exceeds the limit" in caught.value.message()


def test_grpc_messages_over_the_limit_are_refused(small: Server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{small.grpc_port}") as channel:
        stub: Any = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = encode_request("scale", {"x": np.zeros((400, 3), np.float32)})
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in error.details()


def test_a_port_in_use_is_a_config_error(spec_and_models: tuple[PipelineSpec, ModuleType]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(
                ConfigError, match=rf"cannot listen for HTTP on 127.0.0.1:{port}: .*--http-port"
            ),
            running_server([spec_and_models[0]], http_port=port),
        ):
            pass


def test_a_model_that_cannot_load_stops_the_start(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "name": "broken",
            "models": {"gone": {"runtime": "onnx", "uri": "missing.onnx"}},
            "steps": [{"name": "s", "model": "gone"}],
        },
        base_dir=tmp_path,
    )
    gateway = FakeGateway()
    with (
        pytest.raises(ConfigError, match=r"model gone: ONNX file .*missing\.onnx not found"),
        running_server([spec], gateway),
    ):
        pass
    assert gateway.started and gateway.stopped


def test_stop_lets_requests_in_flight_finish(
    spec_and_models: tuple[PipelineSpec, ModuleType],
) -> None:
    spec, models = spec_and_models
    models.Slow.STARTED.clear()
    outcome: dict[str, Any] = {}
    gateway = FakeGateway()
    with running_server([spec], gateway) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/models/slow/infer"
        body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [0.3]}]}

        def call() -> None:
            outcome["response"] = httpx.post(url, json=body, timeout=30)

        caller = threading.Thread(target=call)
        caller.start()
        assert models.Slow.STARTED.wait(10)
    # Leaving the block stopped the server while the model was still sleeping.
    caller.join(10)
    assert outcome["response"].status_code == 200
    assert outcome["response"].json()["outputs"][0]["data"] == [0.3]
    assert gateway.stopped


def test_live_while_models_load_and_ready_after(
    spec_and_models: tuple[PipelineSpec, ModuleType], tmp_path: Path
) -> None:
    module = spec_and_models[1]
    spec = parse_spec(
        {
            "name": "gated",
            "models": {"gate": {"runtime": "python", "handler": f"{module.__name__}:Gate"}},
            "steps": [{"name": "s", "model": "gate"}],
        },
        base_dir=tmp_path,
    )
    module.Gate.OPEN.clear()

    async def scenario() -> None:
        server = Server(DataPlane([compile_plan(spec)]), host="127.0.0.1", http_port=0, grpc_port=0)
        starting = asyncio.create_task(server.start())
        while not server.http_port:  # 0 until the port is bound
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as client:
            while True:
                try:
                    live = await client.get("/v2/health/live")
                    break
                except httpx.ConnectError:  # bound, but not accepting yet
                    await asyncio.sleep(0.01)
            assert live.status_code == 200 and not starting.done()
            not_ready = await client.get("/v2/health/ready")
            assert not_ready.status_code == 400
            assert not_ready.json() == {"error": "server is not ready"}
            module.Gate.OPEN.set()
            await starting
            assert (await client.get("/v2/health/ready")).status_code == 200
        await server.stop()

    asyncio.run(scenario())


def wait_live(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("streamdag serve did not become ready")


def test_cli_serves_until_sigterm(
    spec_and_models: tuple[PipelineSpec, ModuleType], bootstrap: str
) -> None:
    spec = spec_and_models[0]
    assert spec.source is not None
    http_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "streamdag.cli.main", "serve", spec.source]
    command += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    command += ["--bootstrap", bootstrap]
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) as process:
        try:
            wait_live(http_port, process)
            body = {
                "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]
            }
            url = f"http://127.0.0.1:{http_port}/v2/models/scale/infer"
            assert httpx.post(url, json=body).json()["outputs"][0]["data"] == [2.0, 4.0, 6.0]
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                stub: Any = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
                assert stub.ModelInfer(encode_request("echo", {"v": [1]})).model_name == "echo"
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert f"REST http://127.0.0.1:{http_port}" in stderr


def test_cli_reports_a_bad_start_in_one_line(tmp_path: Path, bootstrap: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = tmp_path / "p.yaml"
        spec.write_text(
            "name: p\nmodels:\n  m: {runtime: python, handler: os:getcwd}\n"
            "steps:\n  - {name: s, model: m}\n"
        )
        command = [sys.executable, "-m", "streamdag.cli.main", "serve", str(spec)]
        command += ["--http-port", str(free_port()), "--grpc-port", str(port)]
        command += ["--bootstrap", bootstrap]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: cannot listen for gRPC on 127.0.0.1:{port}")
    )
