"""One request through the gateway and a 3-step pipeline makes one trace: a span at the
front door and one per step, exported over OTLP to an in-process collector."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from server_support import running_server

from streamdag.broker import free_port
from streamdag.engine import PipelineRunner
from streamdag.observability import tracing
from streamdag.pipeline import compile_plan, load_spec
from streamdag.serving import KafkaGateway

pytestmark = pytest.mark.kafka

SPEC = """
name: "{name}"
partitions: 2
models:
  m: {{runtime: python, handler: "trace_models:plus_one"}}
steps:
  - {{name: first, model: m}}
  - {{name: second, model: m, inputs: [first.outputs]}}
  - {{name: third, model: m, inputs: [second.outputs]}}
"""


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self.lock:
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    server = grpc.server(futures.ThreadPoolExecutor(2))
    sink = Collector()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield sink, f"127.0.0.1:{port}"
    finally:
        tracing.shutdown_tracing()
        server.stop(None)


def test_one_trace_from_front_door_through_every_step(
    bootstrap: str,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    collector: tuple[Collector, str],
) -> None:
    sink, endpoint = collector
    (tmp_path / "trace_models.py").write_text(
        "def plus_one(inputs):\n    return {'x': inputs['x'] + 1}\n"
    )
    spec_path = tmp_path / "pipeline.yaml"
    spec_path.write_text(SPEC.format(name=unique_name("tr")))
    spec = load_spec(spec_path)
    assert tracing.configure_tracing("streamdag-test", endpoint)

    runner = PipelineRunner(compile_plan(spec), bootstrap)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        with running_server(
            [spec], gateway=KafkaGateway([compile_plan(spec)], bootstrap)
        ) as server:
            url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"
            body = {
                "id": "traced-1",
                "inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}],
            }
            response = httpx.post(url, json=body, timeout=30)
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == [4]
    finally:
        runner.stop()
        thread.join(60)
    tracing.shutdown_tracing()  # flushes every buffered span to the collector

    spans = [s for s in sink.spans if s.name.startswith(("pipeline ", "step "))]
    names = sorted(s.name for s in spans)
    assert names == [f"pipeline {spec.name}", "step first", "step second", "step third"]
    assert len({s.trace_id for s in sink.spans}) == 1, "spans of several traces"
    by_id = {s.span_id: s for s in spans}
    # Each step is the child of the hop before it, back to the front door.
    chain = {s.name: by_id[s.parent_span_id].name for s in spans if s.parent_span_id in by_id}
    assert chain == {
        "step first": f"pipeline {spec.name}",
        "step second": "step first",
        "step third": "step second",
    }
    phases = {s.name for s in sink.spans} - set(names)
    assert {"kafka wait", "batch wait", "model", "produce"} <= phases
