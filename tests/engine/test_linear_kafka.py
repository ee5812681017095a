"""A linear pipeline over the real broker: correct results, batching, poison records,
undecodable records, slow models, graceful stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer
from kafka_support import count_by_id, read_results, read_topic, send_requests

from streamdag.engine import StepWorker, step_plan
from streamdag.kafka import ensure_topics
from streamdag.kafka.headers import ERROR, ErrorInfo, get_header
from streamdag.pipeline import compile_plan, derive_topics, load_spec
from streamdag.protocol import encode_request
from streamdag.runtimes import create_model

LINEAR = """
name: "{name}"
guarantee: GUARANTEE
partitions: 3
models:
  scale: {runtime: python, handler: "linear_models:scale", outputs: [y],
          batch: {max_size: 32, max_wait_ms: 5}}
  shift: {runtime: python, handler: "linear_models:shift", outputs: [w]}
  total: {runtime: python, handler: "linear_models:total", outputs: [sum]}
steps:
  - {name: double, model: scale}
  - name: plus-one
    model: shift
    inputs: [double.outputs.y]
    tensor_map: {double.outputs.y: v}
  - {name: add-up, model: total, inputs: [plus-one.outputs]}
"""


def _requests(n: int) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Requests of 1 to 3 rows of 4 values each, so batches mix request sizes."""
    out = []
    for i in range(n):
        rows = 1 + i % 3
        x = np.arange(rows * 4, dtype=np.int64).reshape(rows, 4) + i
        out.append((f"req-{i}", {"x": x}))
    return out


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_three_step_linear_pipeline_gives_every_result(
    guarantee: str, bootstrap: str, pipeline_spec: Callable[[str], Path], running: Callable
) -> None:
    spec = load_spec(pipeline_spec(LINEAR.replace("GUARANTEE", guarantee)))
    requests = _requests(1000)
    user_headers = [
        ("x-tenant", b"clinic-7"),
        ("traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"),
    ]
    with running(spec, bootstrap):
        send_requests(bootstrap, spec.name, requests, headers=user_headers)
        results = read_results(bootstrap, spec.name, until=1000, settle=1.0)

    assert count_by_id(results) == {rid: 1 for rid, _ in requests}
    expected = {rid: (2 * arrays["x"] + 1).sum(axis=1) for rid, arrays in requests}
    for r in results:
        assert r.error is None
        np.testing.assert_array_equal(r.arrays["sum"], expected[r.request_id])
        assert "x-request-id" not in r.headers  # the key is the request id
        assert r.headers["x-tenant"] == b"clinic-7"
        assert r.headers["traceparent"].startswith(b"00-aaaa")
        assert r.headers["streamdag-step"] == b"add-up"  # the outputs topic names no step
        assert "streamdag-pipeline" not in r.headers  # the topic names the pipeline


POISON = """
name: "{name}"
partitions: 2
retry: {max_attempts: 3, backoff_ms: 10}
models:
  m: {runtime: python, handler: "linear_models:poisoned", outputs: [y],
      batch: {max_size: 64, max_wait_ms: 50}}
steps:
  - {name: score, model: m}
"""


def test_poison_record_is_isolated_and_reported(
    bootstrap: str, pipeline_spec: Callable[[str], Path], running: Callable
) -> None:
    spec = load_spec(pipeline_spec(POISON))
    requests = [(f"r{i}", {"x": np.array([i], dtype=np.int32)}) for i in range(100)]
    with running(spec, bootstrap):
        send_requests(bootstrap, spec.name, requests)
        results = read_results(bootstrap, spec.name, until=100, settle=0.5)
        errors = read_topic(bootstrap, f"streamdag.{spec.name}.errors", until=1, settle=0.5)

    assert count_by_id(results) == {rid: 1 for rid, _ in requests}
    by_id = {r.request_id: r for r in results}
    failed = by_id.pop("r13")
    assert failed.error is not None
    assert failed.error.step == "score"
    assert failed.error.code == "model_error"
    assert failed.error.attempts == 3
    assert "cannot score 13" in failed.error.message
    assert all(r.error is None for r in by_id.values())
    assert [int(by_id[f"r{i}"].arrays["y"][0]) for i in range(100) if i != 13] == [
        2 * i for i in range(100) if i != 13
    ]
    assert len(errors) == 1
    key, value, headers = errors[0]
    assert key == b"r13"
    original = encode_request(spec.name, dict(requests)["r13"], id="r13").SerializeToString()
    assert value == original
    info = ErrorInfo.decode(get_header(headers, ERROR) or "")
    assert (info.step, info.attempts) == ("score", 3)
    assert get_header(headers, "streamdag-source-topic") == f"streamdag.{spec.name}.inputs"


def test_undecodable_record_is_answered_without_retries(
    bootstrap: str, pipeline_spec: Callable[[str], Path], running: Callable
) -> None:
    spec = load_spec(pipeline_spec(POISON))
    with running(spec, bootstrap):
        producer = Producer({"bootstrap.servers": bootstrap})
        producer.produce(f"streamdag.{spec.name}.inputs", b"\xff\x00garbage", b"bad-1")
        producer.flush(10)
        send_requests(bootstrap, spec.name, [("good-1", {"x": np.array([1], dtype=np.int32)})])
        results = read_results(bootstrap, spec.name, until=2, settle=0.5)
        errors = read_topic(bootstrap, f"streamdag.{spec.name}.errors", until=1)

    by_id = {r.request_id: r for r in results}
    assert set(by_id) == {"bad-1", "good-1"}
    bad = by_id["bad-1"].error
    assert bad is not None and bad.code == "invalid_argument" and bad.attempts == 0
    assert "ModelInferRequest" in bad.message
    assert by_id["good-1"].arrays["y"].tolist() == [2]
    assert errors[0][1] == b"\xff\x00garbage"


DECLARED = POISON.replace("outputs: [y],", "outputs: [y], inputs: [{name: x, datatype: INT32}],")


def test_records_unlike_the_declared_inputs_are_answered_without_retries(
    bootstrap: str, pipeline_spec: Callable[[str], Path], running: Callable
) -> None:
    """Written to the inputs topic directly, past the front door's check: the worker checks
    the spec's ``inputs`` and answers at once, while the rest of the batch goes on."""
    spec = load_spec(pipeline_spec(DECLARED))
    with running(spec, bootstrap):
        send_requests(
            bootstrap,
            spec.name,
            [
                ("good", {"x": np.array([4], dtype=np.int32)}),
                ("typo", {"z": np.array([4], dtype=np.int32)}),
                ("floats", {"x": np.array([4.0], dtype=np.float32)}),
            ],
        )
        results = read_results(bootstrap, spec.name, until=3, settle=0.5)
    by_id = {r.request_id: r for r in results}
    assert by_id["good"].arrays["y"].tolist() == [8]
    typo, floats = by_id["typo"].error, by_id["floats"].error
    assert typo is not None and floats is not None
    assert (typo.code, typo.attempts, typo.step) == ("invalid_argument", 1, "score")
    assert "missing input 'x'; it takes 'x'" in typo.message
    assert (floats.code, floats.attempts) == ("invalid_argument", 1)
    assert "input 'x': expected datatype INT32, got FP32" in floats.message


SLOW = """
name: "{name}"
partitions: 1
models:
  m:
    runtime: python
    handler: "linear_models:very_slow_scale"
    batch: {max_size: 8, max_wait_ms: 200}
steps:
  - {name: slow, model: m}
"""


def test_slow_model_keeps_its_partitions(
    bootstrap: str, pipeline_spec: Callable[[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A model call longer than max.poll.interval.ms must not get the worker evicted."""
    spec = load_spec(pipeline_spec(SLOW))
    ensure_topics(bootstrap, derive_topics(spec))
    plan = step_plan(compile_plan(spec), "slow")
    model = create_model("m", spec.models["m"], spec.base_dir)
    model.load()
    stop = threading.Event()
    worker = StepWorker(
        plan, model, bootstrap, stop, consumer_overrides={"max.poll.interval.ms": 6000}
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    caplog.set_level(logging.INFO, logger="streamdag")
    thread.start()
    try:
        send_requests(bootstrap, spec.name, [(f"s{i}", {"x": np.array([i])}) for i in range(3)])
        results = read_results(bootstrap, spec.name, until=3, timeout=60, settle=1.0)
        while_running = [r.getMessage() for r in caplog.records]
    finally:
        stop.set()
        thread.join(30)
    assert count_by_id(results) == {"s0": 1, "s1": 1, "s2": 1}
    assert not [m for m in while_running if "lost" in m or "revoked" in m]


TIMEOUT = """
name: "{name}"
partitions: 1
retry: {max_attempts: 2, backoff_ms: 10}
models:
  m:
    runtime: python
    handler: "linear_models:hangs_on_seven"
    timeout_ms: 200
    batch: {max_size: 16, max_wait_ms: 50}
steps:
  - {name: score, model: m}
"""


def test_a_call_past_the_model_timeout_fails_that_record_only(
    bootstrap: str, pipeline_spec: Callable[[str], Path], running: Callable
) -> None:
    spec = load_spec(pipeline_spec(TIMEOUT))
    requests = [(f"t{i}", {"x": np.array([i], dtype=np.int32)}) for i in range(12)]
    with running(spec, bootstrap):
        send_requests(bootstrap, spec.name, requests)
        results = read_results(bootstrap, spec.name, until=12, timeout=60, settle=0.5)
    assert count_by_id(results) == {rid: 1 for rid, _ in requests}
    failed = [r for r in results if r.error is not None]
    assert [r.request_id for r in failed] == ["t7"]
    error = failed[0].error
    assert error is not None
    assert (error.code, error.attempts) == ("deadline_exceeded", 2)
    assert "did not answer within 0.2s" in error.message
