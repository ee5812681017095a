"""A pipeline's readiness follows its steps, over the real broker: not ready while a step's
consumer group has no member, saying which (REST body, gRPC trailer, web view, log), ready
once every step has a worker, not ready again when they stop; the server stays ready."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from kafka_support import run_pipeline
from server_support import running_server
from ui.browser import dump_dom

from streamdag.pipeline import compile_plan, load_spec
from streamdag.protocol import inference_pb2, inference_pb2_grpc
from streamdag.serving import KafkaGateway

pytestmark = pytest.mark.kafka

NOT_READY_TRAILER = "streamdag-not-ready"

SPEC = """
name: "{name}"
partitions: 2
timeout_ms: 20000
models:
  double: {{runtime: python, handler: "gateway_models:double"}}
  add-one: {{runtime: python, handler: "gateway_models:add_one"}}
steps:
  - {{name: double, model: double}}
  - {{name: add-one, model: add-one, inputs: [double.outputs]}}
"""


def _until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_a_pipeline_is_ready_only_while_every_step_has_a_worker(
    bootstrap: str,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamdag.serving.gateway")
    shutil.copy(Path(__file__).with_name("gateway_models.py"), tmp_path / "gateway_models.py")
    path = tmp_path / "pipeline.yaml"
    name = unique_name("ready")
    path.write_text(SPEC.format(name=name))
    spec = load_spec(path)
    gateway = KafkaGateway([compile_plan(spec)], bootstrap)
    with (
        running_server([spec], gateway=gateway, kafka=bootstrap) as server,
        httpx.Client() as http,
    ):
        base = f"http://127.0.0.1:{server.http_port}"
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)

        def rest_ready() -> httpx.Response:
            return http.get(f"{base}/v2/models/{name}/ready")

        def grpc_ready() -> tuple[bool, dict[str, str]]:
            reply, call = stub.ModelReady.with_call(inference_pb2.ModelReadyRequest(name=name))
            return reply.ready, dict(call.trailing_metadata() or ())

        # No worker yet: the server is ready (it reaches Kafka), the pipeline is not.
        assert http.get(f"{base}/v2/health/ready").status_code == 200
        not_ready = rest_ready()
        assert not_ready.status_code == 400
        reason = not_ready.json()["error"]
        assert f"pipeline {name} is not ready" in reason
        assert "step double has no worker" in reason and "step add-one has no worker" in reason
        ready, trailer = grpc_ready()
        assert not ready and "step add-one has no worker" in trailer[NOT_READY_TRAILER]
        index = http.post(f"{base}/v2/repository/index", json={}).json()
        assert {"name": name, "state": "UNAVAILABLE"}.items() <= index[-1].items()

        # A job waits in Kafka: the reason tells the records waiting for double.
        submitted = http.post(
            f"{base}/v2/pipelines/{name}/jobs",
            json={
                "id": "job-1",
                "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
            },
        )
        assert submitted.status_code == 202, submitted.text
        waiting = _until(lambda: "records waiting: double 1" in rest_ready().text, 10)
        assert waiting, rest_ready().text
        stats = http.get(f"{base}/ui/api/pipelines/{name}/stats").json()["readiness"]
        assert stats["ready"] is False and stats["workers"] == {"double": 0, "add-one": 0}
        assert stats["lag"]["double"] == 1
        dom = dump_dom(f"{base}/ui/", budget_ms=4_000)
        assert '<span id="sum-ready" class="v bad"' in dom and "step double has no worker" in dom
        assert dom.count(">no worker</text>") == 2

        with run_pipeline(spec, bootstrap):
            assert _until(lambda: rest_ready().status_code == 200), rest_ready().text
            assert grpc_ready() == (True, {})
            assert http.get(f"{base}/ui/api/pipelines/{name}/stats").json()["readiness"][
                "workers"
            ] == {"double": 1, "add-one": 1}
            done = _until(
                lambda: http.get(f"{base}/v2/pipelines/{name}/jobs/job-1").status_code == 200
            )
            assert done, "the waiting job never ran"

        # The workers left their groups: not ready again, at once.
        assert _until(lambda: rest_ready().status_code == 400, 15), "still ready"
        assert http.get(f"{base}/v2/health/ready").status_code == 200
        channel.close()

    logged = [r.getMessage() for r in caplog.records if r.name == "streamdag.serving.gateway"]
    assert any(
        m.startswith(f"pipeline {name} is not ready: step double has no worker") for m in logged
    ), logged
    assert f"pipeline {name} is ready: every step has a worker" in logged
