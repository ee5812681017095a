"""Fused stages over the real broker: the same answers, topics and hops as the unfused
pipeline, a poison record in a middle step failing only its own request, and a fused
worker SIGKILLed mid-stream under exactly_once. Topics are read read_committed."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from kafka_support import Result, Workers, count_by_id, read_results, read_topic, send_requests

from streamdag.engine import PipelineRunner
from streamdag.errors import ConfigError
from streamdag.kafka import ensure_topics
from streamdag.observability.inspect import trace_request
from streamdag.pipeline import PipelineSpec, compile_plan, derive_topics, load_spec

# Fan-out, an inner join, a trigger routing to two branches and the output join: the
# demo's shape. `right` fails request 7 (b = 70): a poison record in a middle step.
SHAPE = """
name: "{name}"
guarantee: exactly_once
partitions: 3
models:
  split: {runtime: python, handler: "dag_models:split", outputs: [a, b]}
  left: {runtime: python, handler: "dag_models:LEFT", outputs: [l], batch: {max_size: 16}}
  right: {runtime: python, handler: "dag_models:failing_right", outputs: [r]}
  combine: {runtime: python, handler: "dag_models:combine", outputs: [total, parts]}
  gate: {runtime: python, handler: "dag_models:gate", outputs: [x, even, odd]}
  even: {runtime: python, handler: "dag_models:tag_even", outputs: [kind, y]}
  odd: {runtime: python, handler: "dag_models:tag_odd", outputs: [kind, y]}
retry: {max_attempts: 2, backoff_ms: 10}
steps:
  - {name: split, model: split}
  - {name: left, model: left, inputs: [split.outputs.a]}
  - {name: right, model: right, inputs: [split.outputs.b]}
  - name: both
    model: combine
    inputs: [left.outputs, right.outputs]
    join: inner
    join_window_ms: 120000
  - {name: gate, model: gate, inputs: [both.outputs.total]}
  - {name: even, model: even, inputs: [gate.outputs.x], when: [gate.outputs.even]}
  - {name: odd, model: odd, inputs: [gate.outputs.x], when: [gate.outputs.odd]}
output:
  steps: [even, odd]
  join: outer
  join_window_ms: 120000
"""
# `both` joins `left`, handed on in memory, with `right`, read from Kafka: `right` runs
# on its own, outside the stage, so its pieces come later than unfused, by its lag. The
# windows above are long enough for a loaded machine: a window that passes fails the
# request (inner) or answers without a piece (outer), in any form.
STAGES = """
stages:
  - [split, left, both, gate]
  - [even, odd, output]
"""
STEP_TOPICS = ["split", "left", "right", "both", "gate", "even", "odd"]


def shape(left: str = "left", stages: bool = False) -> str:
    return SHAPE.replace("LEFT", left) + (STAGES if stages else "")


def _xs(n: int) -> list[tuple[str, dict[str, np.ndarray]]]:
    return [(f"j{i}", {"x": np.array([i], dtype=np.int64)}) for i in range(n)]


def _answer(r: Result) -> Any:
    if r.error is not None:
        return ("error", r.error.code, r.error.step)
    return {name: a.tolist() for name, a in sorted(r.arrays.items())}


def _expected(i: int) -> Any:
    if i == 7:
        return ("error", "model_error", "right")
    if i == 0:
        return {}  # no branch takes it: one empty answer
    total = 12 * i + 5
    if i % 2 == 0:
        return {"kind": [b"even"], "y": [2 * total]}
    return {"kind": [b"odd"], "y": [3 * total]}


def _step_records(bootstrap: str, spec: PipelineSpec) -> dict[str, Counter[Any]]:
    """Per step, the (key, value) of every committed record of its outputs topic, read
    to the end (the last stable offset: every transaction is decided by then)."""
    topics = {f"streamdag.{spec.name}.{step}.outputs": step for step in STEP_TOPICS}
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    found: dict[str, Counter[Any]] = {step: Counter() for step in STEP_TOPICS}
    pending = {(t, p) for t in topics for p in range(spec.partitions)}
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in pending])
    deadline = time.monotonic() + 30
    try:
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error() is not None:
                pending.discard((msg.topic(), msg.partition()))
                continue
            found[topics[msg.topic()]][(msg.key(), msg.value())] += 1
    finally:
        consumer.close()
    assert not pending, f"not read to the end: {sorted(pending)}"
    return found


def _hops(bootstrap: str, spec: PipelineSpec, request_id: str) -> list[Any]:
    trace = trace_request(compile_plan(spec), bootstrap, request_id, timeout=30)
    views = [hop.record for hop in trace.hops]
    return sorted(
        (v.label, v.error.code if v.error else "", v.skipped, tuple(t.name for t in v.tensors))
        for v in views
    )


def test_fused_stages_answer_and_write_as_the_unfused_pipeline(
    bootstrap: str, pipeline_spec: Callable[[str], Path], running: Callable
) -> None:
    """1,000 requests through the pipeline unfused, fused whole (`run --fuse`) and in the
    spec's stages, side by side: the same answers, the same records on every step's
    topic, the same failures and the same hops in `inspect`."""
    unfused = load_spec(pipeline_spec(shape()))
    whole = load_spec(pipeline_spec(shape()))
    staged = load_spec(pipeline_spec(shape(stages=True)))
    forms = [unfused, whole, staged]
    n = 1000
    requests = _xs(n)
    with (
        running(unfused, bootstrap),
        running(whole, bootstrap, fuse=True),
        running(staged, bootstrap),
    ):
        for spec in forms:
            send_requests(bootstrap, spec.name, requests)
        answers = [
            read_results(bootstrap, spec.name, until=n, timeout=90, settle=1.0) for spec in forms
        ]
    for results in answers:
        assert count_by_id(results) == {rid: 1 for rid, _ in requests}
        by_id = {r.request_id: _answer(r) for r in results}
        assert by_id == {rid: _expected(int(rid[1:])) for rid, _ in requests}
    # Every step wrote one record per request to its topic, the same bytes in every form.
    written = [_step_records(bootstrap, spec) for spec in forms]
    for step in STEP_TOPICS:
        assert sum(written[0][step].values()) == n, step
        assert written[1][step] == written[0][step], step
        assert written[2][step] == written[0][step], step
    for spec in forms:
        failed = read_topic(bootstrap, f"streamdag.{spec.name}.errors", until=1, settle=0.5)
        assert [key for key, _, _ in failed] == [b"j7"]
    for rid in ("j0", "j7", "j8"):
        hops = [_hops(bootstrap, spec, rid) for spec in forms]
        assert hops[1] == hops[0], rid
        assert hops[2] == hops[0], rid


@pytest.mark.slow
def test_sigkill_of_a_fused_worker_leaves_every_record_once(
    bootstrap: str, pipeline_spec: Callable[[str], Path], workers: Callable[[Path], Workers]
) -> None:
    """The whole pipeline in one fused worker, SIGKILLed mid-stream and restarted: every
    answer once, and every step's topic holds each request once."""
    path = pipeline_spec(shape(left="slow_left"))
    spec = load_spec(path)
    ensure_topics(bootstrap, derive_topics(spec))
    n = 2000
    requests = _xs(n)
    send_requests(bootstrap, spec.name, requests)
    w = workers(path)
    first = w.start("--fuse", "--instance-id", "fused")
    read_results(bootstrap, spec.name, until=300, timeout=60)
    w.kill(first)  # no chance to finish or commit anything
    w.start("--fuse", "--instance-id", "fused")  # fences the killed one's transaction
    results = read_results(bootstrap, spec.name, until=n, timeout=120, settle=3.0)
    assert count_by_id(results) == {rid: 1 for rid, _ in requests}
    assert {r.request_id: _answer(r) for r in results} == {
        rid: _expected(int(rid[1:])) for rid, _ in requests
    }
    for step, written in _step_records(bootstrap, spec).items():
        keys = Counter(key for key, _ in written.elements())
        assert set(keys) == {rid.encode() for rid, _ in requests}, step
        assert not {k: c for k, c in keys.items() if c > 1}, f"{step}: duplicates"
    assert "worker start: pipeline" in w.log_of(first)


LINEAR = """
name: "{name}"
partitions: 2
models:
  scale: {runtime: python, handler: "linear_models:scale", outputs: [y]}
  shift: {runtime: python, handler: "linear_models:shift", outputs: [w]}
steps:
  - {name: double, model: scale}
  - {name: plus-one, model: shift, inputs: [double.outputs.y], tensor_map: {double.outputs.y: v}}
"""


def test_a_step_is_not_run_fused_while_its_own_group_runs_it(
    bootstrap: str, pipeline_spec: Callable[[str], Path], running: Callable
) -> None:
    spec = load_spec(pipeline_spec(LINEAR))
    with running(spec, bootstrap):
        send_requests(bootstrap, spec.name, [("a", {"x": np.array([[1, 2]])})])
        assert len(read_results(bootstrap, spec.name, until=1, timeout=30)) == 1
        fused = PipelineRunner(compile_plan(spec), bootstrap, fuse=True)
        with pytest.raises(ConfigError, match=f"runs in consumer group streamdag.{spec.name}."):
            fused.run()


def test_a_fused_stage_answers_at_least_once(
    bootstrap: str, pipeline_spec: Callable[[str], Path], running: Callable
) -> None:
    spec = load_spec(
        pipeline_spec(LINEAR.replace("partitions: 2", "partitions: 2\nguarantee: at_least_once"))
    )
    requests = [(f"k{i}", {"x": np.array([[i, -i]])}) for i in range(300)]
    with running(spec, bootstrap, fuse=True):
        send_requests(bootstrap, spec.name, requests)
        results = read_results(bootstrap, spec.name, until=300, timeout=60, settle=0.5)
    assert {r.request_id: r.arrays["w"].tolist() for r in results} == {
        f"k{i}": [[2 * i + 1, -2 * i + 1]] for i in range(300)
    }
    # The first step's results are on its topic too, with no reader of their own.
    written = read_topic(bootstrap, f"streamdag.{spec.name}.double.outputs", until=300)
    assert {key for key, _, _ in written} == {rid.encode() for rid, _ in requests}
