"""The web view tests' pipeline (a fan-out, a join, a trigger and an output join) and a
real server (REST with the web view) over it; workers come from ``kafka_support``.

Requests go through the gateway one at a time, so every step writes one Kafka
transaction per request: the topics hold as many commit markers as records, which is
what the throughput and lag figures must see through.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from server_support import running_server

from streamdag.pipeline import PipelineSpec, compile_plan, load_spec
from streamdag.serving import KafkaGateway, Server

SPEC = """
name: "{name}"
guarantee: exactly_once
partitions: 3
timeout_ms: 20000
retry: {{max_attempts: 1}}
models:
  clean: {{runtime: python, handler: "ui_models:clean", outputs: [x]}}
  left: {{runtime: python, handler: "ui_models:left", outputs: [a]}}
  right: {{runtime: python, handler: "ui_models:right", outputs: [b]}}
  merge: {{runtime: python, handler: "ui_models:merge", outputs: [total, big]}}
  review: {{runtime: python, handler: "ui_models:review", outputs: [flagged]}}
steps:
  - {{name: clean, model: clean}}
  - {{name: left, model: left, inputs: [clean.outputs.x]}}
  - {{name: right, model: right, inputs: [clean.outputs.x]}}
  - {{name: merge, model: merge, inputs: [left.outputs, right.outputs], join: inner}}
  - {{name: review, model: review, inputs: [merge.outputs.total], when: [merge.outputs.big]}}
output:
  steps: [merge, review]
  join: outer
  join_window_ms: 15000
"""
STEPS = ["clean", "left", "right", "merge", "review"]


def write_pipeline(folder: Path, name: str) -> PipelineSpec:
    shutil.copy(Path(__file__).with_name("ui_models.py"), folder / "ui_models.py")
    path = folder / "pipeline.yaml"
    path.write_text(SPEC.format(name=name))
    return load_spec(path)


@dataclass
class LivePipeline:
    spec: PipelineSpec
    server: Server
    bootstrap: str
    ok: list[str]  # ids of requests that succeeded
    failed: list[str]  # ids of requests that failed in step clean

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    def api(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.url}/ui/api/{path}", params=params, timeout=60)

    def stats(self) -> dict[str, Any]:
        response = self.api(f"pipelines/{self.spec.name}/stats")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def send(self, values: list[float], prefix: str = "r") -> tuple[list[str], list[str]]:
        """One request per value, one at a time; (ids answered 200, ids answered 500)."""
        ok: list[str] = []
        failed: list[str] = []
        infer = f"{self.url}/v2/pipelines/{self.spec.name}/infer"
        for value in values:
            rid = f"{prefix}-{uuid.uuid4().hex[:10]}"
            body = {
                "id": rid,
                "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [value]}],
            }
            response = httpx.post(infer, json=body, timeout=30)
            assert response.status_code in (200, 500), response.text
            (ok if response.status_code == 200 else failed).append(rid)
        return ok, failed


@contextmanager
def ui_server(spec: PipelineSpec, bootstrap: str, **options: Any) -> Iterator[Server]:
    """A server with a gateway for ``spec``; its web view reads Kafka at ``bootstrap``.
    ``options`` go to ``Server``."""
    with running_server(
        [spec], gateway=KafkaGateway([compile_plan(spec)], bootstrap), kafka=bootstrap, **options
    ) as server:
        yield server
