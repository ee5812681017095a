"""The demo pipeline's metadata, as tritonclient reads it over REST and gRPC from a server
whose gateway runs on the session broker: the inputs its first step declares and the
outputs its output steps declare; and its description at ``/v2/pipelines/<p>``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import tritonclient.http as httpclient
from demo_support import Trained
from server_support import running_server

from streamdag.broker import BrokerInfo
from streamdag.pipeline import compile_plan, load_spec
from streamdag.serving import Server, build_gateway

# The demo's spec: normalize reads the note; risk, accept and review make up the answer.
# accept and review both give route, codes and confidence; under the outer output join
# one of them answers, so each comes under its own name.
INPUTS = [{"name": "text", "datatype": "BYTES", "shape": ["-1"]}]
OUTPUTS = [
    {"name": "hccs", "datatype": "BYTES", "shape": ["-1"]},
    {"name": "risk_score", "datatype": "FP32", "shape": ["-1"]},
    {"name": "route", "datatype": "BYTES", "shape": ["-1"]},
    {"name": "codes", "datatype": "BYTES", "shape": ["-1"]},
    {"name": "confidence", "datatype": "FP32", "shape": ["-1"]},
    {"name": "queue", "datatype": "BYTES", "shape": ["-1"]},
    {"name": "reason", "datatype": "BYTES", "shape": ["-1"]},
]

_GRPC_METADATA = """
import json, sys
import tritonclient.grpc as grpcclient
client = grpcclient.InferenceServerClient(sys.argv[1])
print(json.dumps(client.get_model_metadata(sys.argv[2], as_json=True)))
"""


@pytest.fixture(scope="module")
def server(trained: Trained, kafka_broker: BrokerInfo) -> Iterator[Server]:
    spec = load_spec(trained.example.spec_path)
    gateway = build_gateway([compile_plan(spec)], kafka_broker.bootstrap)
    with running_server([spec], gateway) as running:
        yield running


@pytest.fixture(scope="module")
def pipeline(trained: Trained) -> str:
    return load_spec(trained.example.spec_path).name


def test_metadata_over_grpc_is_the_declared_tensors(server: Server, pipeline: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _GRPC_METADATA, f"127.0.0.1:{server.grpc_port}", pipeline],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    assert meta["name"] == pipeline
    assert meta["platform"] == "streamdag_pipeline"
    assert meta["inputs"] == INPUTS  # protobuf's JSON form: int64 as strings
    assert meta["outputs"] == OUTPUTS


def test_metadata_over_rest_is_the_declared_tensors(server: Server, pipeline: str) -> None:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    try:
        meta = client.get_model_metadata(pipeline)
    finally:
        client.close()

    def ints(tensors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**t, "shape": [int(d) for d in t["shape"]]} for t in tensors]

    assert meta["name"] == pipeline
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == ints(INPUTS)
    assert meta["outputs"] == ints(OUTPUTS)


def test_the_pipeline_route_describes_steps_and_topics(server: Server, pipeline: str) -> None:
    reply = httpx.get(f"http://127.0.0.1:{server.http_port}/v2/pipelines/{pipeline}")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["name"] == pipeline
    assert [t["name"] for t in body["inputs"]] == ["text"]
    assert [t["name"] for t in body["outputs"]] == [t["name"] for t in OUTPUTS]
    steps = {step["name"]: step for step in body["steps"]}
    assert list(steps) == [
        "normalize",
        "sections",
        "entities",
        "assertion",
        "coder",
        "risk",
        "gate",
        "accept",
        "review",
    ]
    assert steps["coder"]["join"] == "inner"
    assert steps["coder"]["group"] == f"streamdag.{pipeline}.coder"
    assert steps["accept"]["when"] == ["gate.outputs.accepted"]
    assert body["output"] == {
        "steps": ["risk", "accept", "review"],
        "join": "outer",
        "group": f"streamdag.{pipeline}.output",
    }
    topics = body["topics"]
    assert topics["inputs"] == f"streamdag.{pipeline}.inputs"
    assert topics["outputs"] == f"streamdag.{pipeline}.outputs"
    assert topics["errors"] == f"streamdag.{pipeline}.errors"
    assert f"streamdag.{pipeline}.coder.join-state" in topics["all"]
    missing = httpx.get(f"http://127.0.0.1:{server.http_port}/v2/pipelines/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "pipeline nope not found"}
