"""What the front doors make of a caller's headers, over the real broker: the request
record holds ``x-request-id`` once and no caller header passes for streamdag's own; the
REST door bounds how long and how large a request's head may be; the web view of a
server with a payload store reads the values kept there."""

from __future__ import annotations

import contextlib
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from kafka_support import read_topic, run_pipeline
from server_support import running_server

from streamdag.kafka.headers import PAYLOAD, REQUEST_ID
from streamdag.payloads import PayloadStore
from streamdag.pipeline import PipelineSpec, compile_plan, load_spec
from streamdag.protocol import encode_request, inference_pb2_grpc
from streamdag.serving import KafkaGateway
from streamdag.settings import get_settings

pytestmark = pytest.mark.kafka

SPEC = """
name: "{name}"
partitions: 2
timeout_ms: 20000
models:
  double: {{runtime: python, handler: "gateway_models:double"}}
steps:
  - {{name: double, model: double}}
"""


@pytest.fixture
def spec(tmp_path: Path, unique_name: Callable[[str], str]) -> PipelineSpec:
    shutil.copy(Path(__file__).with_name("gateway_models.py"), tmp_path / "gateway_models.py")
    path = tmp_path / "pipeline.yaml"
    path.write_text(SPEC.format(name=unique_name("hd")))
    return load_spec(path)


def body(rid: str, x: list[float]) -> dict[str, object]:
    return {
        "id": rid,
        "inputs": [{"name": "x", "shape": [1, len(x)], "datatype": "FP32", "data": x}],
    }


def test_a_request_record_holds_the_id_once_and_no_forged_streamdag_header(
    bootstrap: str, spec: PipelineSpec
) -> None:
    gateway = KafkaGateway([compile_plan(spec)], bootstrap)
    with run_pipeline(spec, bootstrap), running_server([spec], gateway) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"
        ok = httpx.post(url, json=body("once-1", [1.0]), headers={REQUEST_ID: "once-1"}, timeout=30)
        assert ok.status_code == 200, ok.text
        forged = httpx.post(
            url,
            json=body("forged-rest", [1.0]),
            headers={"x-streamdag-caller": "admin"},
            timeout=30,
        )
        assert forged.status_code == 400
        assert "x-streamdag-caller" in forged.json()["error"]
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
            x = {"x": np.ones((1, 1), np.float32)}
            with pytest.raises(grpc.RpcError) as refused:
                stub.ModelInfer(
                    encode_request(spec.name, x, id="forged-grpc"),
                    metadata=[("x-streamdag-step", "double")],
                    timeout=30,
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "x-streamdag-step" in (refused.value.details() or "")
            stub.ModelInfer(
                encode_request(spec.name, x, id="once-2"),
                metadata=[("x-tenant", "acme")],
                timeout=30,
            )
    records = read_topic(bootstrap, f"streamdag.{spec.name}.inputs", until=2, settle=1)
    assert sorted(key for key, _, _ in records) == [b"once-1", b"once-2"]  # nothing forged
    for key, _, headers in records:
        assert [v for k, v in headers if k == REQUEST_ID] == [key]
        assert not [k for k, _ in headers if k.startswith("x-streamdag-")]


@pytest.fixture
def header_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STREAMDAG_SERVE_HEADER_TIMEOUT_S", "2")
    monkeypatch.setenv("STREAMDAG_SERVE_MAX_HEADER_BYTES", "4096")
    get_settings.cache_clear()
    try:
        yield
    finally:
        get_settings.cache_clear()


@pytest.mark.usefixtures("header_limits")
def test_the_rest_door_bounds_a_request_head_in_time_and_size(
    bootstrap: str, spec: PipelineSpec
) -> None:
    gateway = KafkaGateway([compile_plan(spec)], bootstrap)
    with run_pipeline(spec, bootstrap), running_server([spec], gateway) as server:
        address = ("127.0.0.1", server.http_port)
        head = f"POST /v2/pipelines/{spec.name}/infer HTTP/1.1\r\nhost: x\r\n".encode()
        # Headers one byte at a time, for ever: the connection ends at the deadline.
        slow = socket.create_connection(address, timeout=0.5)
        slow.sendall(head)
        started = time.monotonic()
        answer = b""
        with contextlib.suppress(OSError):  # the reset of a byte sent after the close
            while time.monotonic() - started < 12:
                try:
                    chunk = slow.recv(4096)
                except TimeoutError:
                    slow.sendall(b"x")
                    continue
                if not chunk:
                    break
                answer += chunk
        took = time.monotonic() - started
        slow.close()
        assert took < 6
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer
        # A head begun and left unfinished is answered 408.
        stalled = socket.create_connection(address, timeout=10)
        stalled.sendall(head + b"x-tenant: a")
        assert stalled.recv(4096).startswith(b"HTTP/1.1 408 ")
        stalled.close()
        # Headers over the limit: 431 before any route runs.
        big = socket.create_connection(address, timeout=15)
        big.sendall(
            f"POST /v2/pipelines/{spec.name}/infer HTTP/1.1\r\nhost: x\r\n".encode()
            + b"x-big: "
            + b"a" * 8000
            + b"\r\n\r\n"
        )
        assert big.recv(4096).startswith(b"HTTP/1.1 431 ")
        big.close()
        # The door still serves everyone else.
        url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"
        ok = httpx.post(url, json=body("after", [2.0]), headers={"x-tenant": "a" * 500})
        assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == [4.0]


def test_the_web_view_reads_the_payload_store_it_serves_with(
    bootstrap: str, spec: PipelineSpec, tmp_path: Path
) -> None:
    store = PayloadStore(f"file://{tmp_path}/payloads", inline_max_bytes=1024)
    gateway = KafkaGateway([compile_plan(spec)], bootstrap, payloads=store)
    with (
        run_pipeline(spec, bootstrap, payloads=store),
        running_server(
            [spec], gateway, kafka=bootstrap, payloads=store, ui_show_values=True
        ) as server,
    ):
        base = f"http://127.0.0.1:{server.http_port}"
        x = [0.25 + i for i in range(1000)]  # 4 kB: over the inline limit; no 13
        ok = httpx.post(f"{base}/v2/pipelines/{spec.name}/infer", json=body("big-1", x), timeout=30)
        assert ok.status_code == 200, ok.text
        found = httpx.get(
            f"{base}/ui/api/pipelines/{spec.name}/requests/big-1?values=1", timeout=60
        )
    assert found.status_code == 200, found.text
    request = next(hop for hop in found.json()["hops"] if hop["role"] == "inputs")
    assert PAYLOAD in {k for k, _ in read_topic_headers(bootstrap, spec)}  # a stub in Kafka
    assert request["problem"] is None, request["problem"]
    [tensor] = request["tensors"]
    assert tensor["name"] == "x" and tensor["shape"] == [1, 1000]
    assert tensor["head"] == [0.25, 1.25, 2.25, 3.25, 4.25]


def read_topic_headers(bootstrap: str, spec: PipelineSpec) -> list[tuple[str, bytes]]:
    records = read_topic(bootstrap, f"streamdag.{spec.name}.inputs", until=1)
    return [header for _, _, headers in records for header in headers]
