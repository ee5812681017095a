"""Payloads of any size through a real broker and a real server: a 5 MB request through a
fan-out and a join with a ``file://`` store, over REST and gRPC, with no Kafka record over
``inline_max_bytes``; without a store an oversized request is refused at once and an
oversized result is an error reply at once; a replayed failed request resolves its stub;
a changed or missing object is an error reply naming it."""

from __future__ import annotations

import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from confluent_kafka import Consumer, TopicPartition
from kafka_support import read_results, run_pipeline
from server_support import running_server
from tritonclient.utils import InferenceServerException

from streamdag.engine.envelope import OutRecord, record_size
from streamdag.kafka import list_topics
from streamdag.kafka.headers import PAYLOAD
from streamdag.observability.errors_view import list_failures, replay_failures
from streamdag.payloads import PayloadStore
from streamdag.pipeline import PipelineSpec, compile_plan, load_spec
from streamdag.protocol import decode_response, response_from_bytes
from streamdag.serving import KafkaGateway

pytestmark = pytest.mark.kafka

SPEC = """
name: "{name}"
guarantee: exactly_once
partitions: 2
timeout_ms: 60000
models:
  double: {runtime: python, handler: "claim_models:double"}
  plus-one: {runtime: python, handler: "claim_models:plus_one"}
  add: {runtime: python, handler: "claim_models:add"}
steps:
  - {name: double, model: double}
  - {name: plus-one, model: plus-one, retry: {max_attempts: 1, backoff_ms: 10}}
  - name: add
    model: add
    inputs: [double.outputs.y, plus-one.outputs.y]
    tensor_map: {double.outputs.y: a, plus-one.outputs.y: b}
    join: inner
"""

BIG = """
name: "{name}"
partitions: 1
timeout_ms: 30000
models:
  big: {runtime: python, handler: "claim_models:five_megabytes"}
steps:
  - {name: big, model: big}
"""

X = np.arange(1_250_000, dtype=np.float32).reshape(1, -1) / 1000  # 5 MB of FP32


@pytest.fixture
def pipeline(tmp_path: Path, unique_name: Callable[[str], str]) -> Callable[[str], PipelineSpec]:
    def make(text: str) -> PipelineSpec:
        shutil.copy(Path(__file__).with_name("claim_models.py"), tmp_path / "claim_models.py")
        path = tmp_path / "pipeline.yaml"
        path.write_text(text.replace("{name}", unique_name("cc")))
        return load_spec(path)

    return make


@pytest.fixture
def store(tmp_path: Path) -> PayloadStore:
    return PayloadStore(f"file://{tmp_path}/payloads")


def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every committed record of ``topic``, to the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        partitions = len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        tps = [TopicPartition(topic, p, 0) for p in range(partitions)]
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in tps}
        consumer.assign(tps)
        records = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = all(
                consumer.position([TopicPartition(topic, p)])[0].offset >= end
                for p, end in ends.items()
                if end > 0
            )
            if done:
                break
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                records.append(msg)
        return records
    finally:
        consumer.close()


def largest_record(bootstrap: str, spec: PipelineSpec) -> int:
    topics = [t for t in list_topics(bootstrap) if t.startswith(f"streamdag.{spec.name}.")]
    # inputs, the outputs of the 2 steps the join reads, join state, errors, outputs (the
    # join answers alone: its results go to the outputs topic only)
    assert len(topics) == 6
    sizes = [
        record_size(OutRecord(m.topic(), (m.key() or b"").decode(), m.value(), m.headers() or []))
        for topic in topics
        for m in read_all(bootstrap, topic)
    ]
    assert sizes
    return max(sizes)


def test_a_5_mb_request_crosses_a_fan_out_and_a_join_through_the_store(
    bootstrap: str, pipeline: Callable[[str], PipelineSpec], store: PayloadStore
) -> None:
    spec = pipeline(SPEC)
    gateway = KafkaGateway([compile_plan(spec)], bootstrap, payloads=store)
    with (
        run_pipeline(spec, bootstrap, payloads=store),
        running_server([spec], gateway=gateway) as server,
    ):
        http = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        rest_input = triton_http.InferInput("x", list(X.shape), "FP32")
        rest_input.set_data_from_numpy(X)
        rest = http.infer(spec.name, [rest_input], request_id="rest-1").as_numpy("z")
        grpc_client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        grpc_input = triton_grpc.InferInput("x", list(X.shape), "FP32")
        grpc_input.set_data_from_numpy(X)
        answer = grpc_client.infer(spec.name, [grpc_input], request_id="grpc-1")
        http.close()
        grpc_client.close()
    expected = X * 2 + (X + 1)
    for z in (rest, answer.as_numpy("z")):
        assert z is not None and z.dtype == np.float32
        np.testing.assert_array_equal(z, expected)
    assert largest_record(bootstrap, spec) <= store.inline_max_bytes
    # Both requests, and every step's result of each, went through the store by name.
    names = [p.name for p in Path(store.root).rglob("*") if p.is_file()]
    assert sum(n.startswith("rest-1-") for n in names) >= 4
    assert sum(n.startswith("grpc-1-") for n in names) >= 4


def test_without_a_store_an_oversized_result_is_an_error_reply_at_once(
    bootstrap: str, pipeline: Callable[[str], PipelineSpec]
) -> None:
    spec = pipeline(BIG)
    with (
        run_pipeline(spec, bootstrap),
        running_server([spec], gateway=KafkaGateway([compile_plan(spec)], bootstrap)) as server,
    ):
        url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"
        data = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}
        started = time.monotonic()
        answer = httpx.post(url, json=data, timeout=60)
        took = time.monotonic() - started
    assert answer.status_code == 413
    assert "step big: the result is 5,000," in answer.json()["error"]
    assert took < 10  # the error reply, not the 30 s timeout


def test_a_replayed_failed_request_resolves_its_stub_and_succeeds(
    bootstrap: str, pipeline: Callable[[str], PipelineSpec], store: PayloadStore
) -> None:
    spec = pipeline(SPEC)
    gateway = KafkaGateway([compile_plan(spec)], bootstrap, payloads=store)
    with (
        run_pipeline(spec, bootstrap, payloads=store) as runner,
        running_server([spec], gateway=gateway) as server,
    ):
        assert runner.ready.wait(60)
        models = sys.modules["claim_models"]
        models.broken = True
        http = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        rest_input = triton_http.InferInput("x", list(X.shape), "FP32")
        rest_input.set_data_from_numpy(X)
        with pytest.raises(InferenceServerException, match="plus-one is broken"):
            http.infer(spec.name, [rest_input], request_id="again-1")
        http.close()
        models.broken = False
        failures = list_failures(compile_plan(spec), bootstrap, since_ms=0)
        assert [f.request_id for f in failures] == ["again-1"]
        assert failures[0].record.value and len(failures[0].record.value) < 1000  # a stub
        result = replay_failures(compile_plan(spec), bootstrap, failures, payloads=store)
        assert result.replayed == ["again-1"]
        replies = [
            r for r in read_results(bootstrap, spec.name, until=2, timeout=60) if r.error is None
        ]
    assert len(replies) == 1 and replies[0].request_id == "again-1"
    assert PAYLOAD in replies[0].headers  # the 5 MB answer came as a stub too
    reply = decode_response(response_from_bytes(store.claim(replies[0].headers[PAYLOAD])))
    np.testing.assert_array_equal(reply["z"], X * 2 + (X + 1))


def test_a_changed_or_missing_object_is_an_error_reply_naming_it(
    bootstrap: str, pipeline: Callable[[str], PipelineSpec], store: PayloadStore
) -> None:
    spec = pipeline(SPEC)
    gateway = KafkaGateway([compile_plan(spec)], bootstrap, payloads=store)
    answers: dict[str, InferenceServerException] = {}
    with running_server([spec], gateway=gateway) as server:

        def ask(rid: str) -> None:
            http = triton_http.InferenceServerClient(
                f"127.0.0.1:{server.http_port}", network_timeout=90
            )
            x = triton_http.InferInput("x", list(X.shape), "FP32")
            x.set_data_from_numpy(X)
            try:
                http.infer(spec.name, [x], request_id=rid)
            except InferenceServerException as exc:
                answers[rid] = exc
            finally:
                http.close()

        threads = [threading.Thread(target=ask, args=(rid,)) for rid in ("changed", "gone")]
        for t in threads:
            t.start()
        # The workers are not running yet: change the objects before any step reads them.
        deadline = time.monotonic() + 30
        objects: dict[str, Path] = {}
        while len(objects) < 2 and time.monotonic() < deadline:
            for p in Path(store.root).rglob("*"):
                if p.is_file() and ".part-" not in p.name:
                    objects[p.name.split("-")[0]] = p
            time.sleep(0.1)
        objects["changed"].write_bytes(b"\0" * objects["changed"].stat().st_size)
        objects["gone"].unlink()
        with run_pipeline(spec, bootstrap, payloads=store):
            for t in threads:
                t.join(90)
    for rid, problem in (("changed", "does not match its record"), ("gone", "is missing")):
        assert answers[rid].status() == "500"
        assert f"payload file://{objects[rid]} {problem}" in (answers[rid].message() or "")
