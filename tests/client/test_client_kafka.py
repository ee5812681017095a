"""``streamdag.Client`` and ``AsyncClient`` against a real ``streamdag serve`` process
whose pipeline runs on the session broker, over gRPC and REST: inference of a pipeline and
of a model, metadata, readiness, a job's round trip, and the server's errors raised as
streamdag's own classes."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from kafka_support import Workers, run_pipeline

import streamdag
from streamdag.broker import BrokerInfo, free_port
from streamdag.errors import (
    ConfigError,
    InvalidInput,
    ModelError,
    NotFound,
    StreamdagError,
    Unavailable,
)
from streamdag.pipeline import load_spec

pytestmark = pytest.mark.kafka

SPEC = """
name: "{name}"
partitions: 2
timeout_ms: 20000
retry: {{max_attempts: 1}}
models:
  double:
    runtime: python
    handler: "gateway_models:double"
    inputs: [{{name: x, datatype: FP32, shape: [-1, -1]}}]
    outputs: [{{name: x, datatype: FP32, shape: [-1, -1]}}]
  add-one:
    runtime: python
    handler: "gateway_models:add_one"
    outputs: [{{name: x, datatype: FP32, shape: [-1, -1]}}]
steps:
  - {{name: double, model: double}}
  - {{name: add-one, model: add-one, inputs: [double.outputs]}}
"""


class Served:
    def __init__(self, pipeline: str, http_port: int, grpc_port: int) -> None:
        self.pipeline = pipeline
        self.rest = f"http://127.0.0.1:{http_port}"
        self.grpc = f"127.0.0.1:{grpc_port}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, kafka_broker: BrokerInfo) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("client")
    models = Path(__file__).parents[1] / "serving" / "gateway_models.py"
    shutil.copy(models, root / "gateway_models.py")
    name = f"client-{time.time_ns() % 10**8}"
    path = root / "pipeline.yaml"
    path.write_text(SPEC.format(name=name))
    spec = load_spec(path)
    http_port, grpc_port = free_port(), free_port()
    workers = Workers(path, kafka_broker.bootstrap, root / "logs")
    with run_pipeline(spec, kafka_broker.bootstrap):
        workers.start(
            "--host",
            "127.0.0.1",
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(grpc_port),
            command="serve",
        )
        try:
            served = Served(name, http_port, grpc_port)
            _wait_ready(served, workers)
            yield served
        finally:
            for proc in workers.procs:
                workers.terminate(proc)


def _wait_ready(served: Served, workers: Workers) -> None:
    deadline = time.monotonic() + 90
    with streamdag.Client(served.grpc, timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if client.ready(served.pipeline):
                    return
            except Unavailable:
                pass
            time.sleep(0.3)
    raise AssertionError(f"serve never became ready:\n{workers.logs()}")


Door = Callable[[Served], streamdag.Client]


def grpc_client(served: Served) -> streamdag.Client:
    return streamdag.Client(served.grpc, rest_url=served.rest)


def rest_client(served: Served) -> streamdag.Client:
    return streamdag.Client(served.rest)


doors = pytest.mark.parametrize("door", [grpc_client, rest_client], ids=["grpc", "rest"])


@doors
def test_a_pipeline_answers_with_numpy_arrays(served: Served, door: Door) -> None:
    with door(served) as client:
        assert client.live() and client.ready()
        out = client.infer(served.pipeline, {"x": [[1.0, 2.5], [3.0, 4.0]]}, id="c-1")
        assert list(out) == ["x"]
        assert out["x"].dtype == np.float32
        np.testing.assert_array_equal(out["x"], np.array([[3, 6], [7, 9]], dtype=np.float32))


@doors
def test_a_served_model_answers(served: Served, door: Door) -> None:
    with door(served) as client:
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        out = client.infer("double", {"x": x})
        np.testing.assert_array_equal(out["x"], x * 2)


@doors
def test_metadata_of_the_pipeline(served: Served, door: Door) -> None:
    with door(served) as client:
        meta = client.metadata(served.pipeline)
    assert meta.name == served.pipeline
    assert [(t.name, t.datatype, t.shape) for t in meta.inputs] == [("x", "FP32", [-1, -1])]
    assert [(t.name, t.datatype, t.shape) for t in meta.outputs] == [("x", "FP32", [-1, -1])]


@doors
def test_a_job_round_trip(served: Served, door: Door) -> None:
    with door(served) as client:
        job = client.submit_job(served.pipeline, {"x": [[5.0]]}, id=f"job-{door.__name__}")
        assert job == f"job-{door.__name__}"
        out = client.wait_job(served.pipeline, job, timeout=30)
        np.testing.assert_array_equal(out["x"], [[11.0]])
        assert client.pipeline(served.pipeline)["topics"]["inputs"].endswith(".inputs")


@doors
@pytest.mark.parametrize(
    ("name", "inputs", "error", "message"),
    [
        ("nope", {"x": [[1.0]]}, NotFound, "nope not found"),
        ("{pipeline}", {"x": [[1, 2]]}, InvalidInput, "expected datatype FP32, got INT64"),
        ("{pipeline}", {"x": [[13.0]]}, ModelError, "double cannot take 13"),
    ],
    ids=["not-found", "invalid-input", "model-error"],
)
def test_errors_are_streamdag_errors(
    served: Served,
    door: Door,
    name: str,
    inputs: dict[str, list[list[float]]],
    error: type[StreamdagError],
    message: str,
) -> None:
    with door(served) as client, pytest.raises(error, match=message) as raised:
        client.infer(name.format(pipeline=served.pipeline), inputs)
    assert type(raised.value) is error


def test_a_grpc_client_without_a_rest_url_says_jobs_need_one(served: Served) -> None:
    with streamdag.Client(served.grpc) as client, pytest.raises(ConfigError, match="rest_url"):
        client.submit_job(served.pipeline, {"x": [[1.0]]})


def test_no_server_is_unavailable() -> None:
    client = streamdag.Client(f"127.0.0.1:{free_port()}", timeout=2)
    with client, pytest.raises(Unavailable):
        client.infer("double", {"x": [[1.0]]})


def test_the_async_client_runs_calls_side_by_side(served: Served) -> None:
    async def main() -> list[np.ndarray]:
        async with streamdag.AsyncClient(served.grpc, rest_url=served.rest) as client:
            calls = [client.infer(served.pipeline, {"x": [[float(i)]]}) for i in range(8)]
            answers = await asyncio.gather(*calls)
            job = await client.submit_job(served.pipeline, {"x": [[2.0]]})
            done = await client.wait_job(served.pipeline, job, timeout=30)
            return [a["x"] for a in answers] + [done["x"]]

    results = asyncio.run(main())
    assert [r.tolist() for r in results] == [[[2.0 * i + 1]] for i in range(8)] + [[[5.0]]]
