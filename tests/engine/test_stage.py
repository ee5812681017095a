"""A stage's logic without Kafka: fused steps write what the same steps write one by one,
each hand-off on the partition Kafka would give it, and a failing middle step fails only
its own requests."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from streamdag.engine.envelope import OutRecord
from streamdag.engine.logic import Predict
from streamdag.engine.stage import StageLogic, StagePlan, stage_plan
from streamdag.kafka.partitioner import partition_for
from streamdag.pipeline import NodeKind, PipelinePlan, compile_plan, parse_spec
from streamdag.protocol import encode_request
from streamdag.runtimes import create_model

HERE = Path(__file__).parent

SPEC = """
name: fan
partitions: 3
retry: {max_attempts: 2, backoff_ms: 0}
models:
  split: {runtime: python, handler: "dag_models:split", outputs: [a, b]}
  left: {runtime: python, handler: "dag_models:left", outputs: [l], batch: {max_size: 4}}
  right: {runtime: python, handler: "dag_models:failing_right", outputs: [r]}
  combine: {runtime: python, handler: "dag_models:combine", outputs: [total, parts]}
  gate: {runtime: python, handler: "dag_models:gate", outputs: [x, even, odd]}
  even: {runtime: python, handler: "dag_models:tag_even", outputs: [kind, y]}
  odd: {runtime: python, handler: "dag_models:tag_odd", outputs: [kind, y]}
steps:
  - {name: split, model: split}
  - {name: left, model: left, inputs: [split.outputs.a]}
  - {name: right, model: right, inputs: [split.outputs.b]}
  - {name: both, model: combine, inputs: [left.outputs, right.outputs], join: inner}
  - {name: gate, model: gate, inputs: [both.outputs.total]}
  - {name: even, model: even, inputs: [gate.outputs.x], when: [gate.outputs.even]}
  - {name: odd, model: odd, inputs: [gate.outputs.x], when: [gate.outputs.odd]}
output: {steps: [even, odd], join: outer}
"""


class Message:
    """A consumed record, as confluent-kafka hands it over."""

    def __init__(self, topic: str, partition: int, offset: int, record: OutRecord) -> None:
        self._topic, self._partition, self._offset, self._record = topic, partition, offset, record

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._record.key.encode()

    def value(self) -> bytes | None:
        return self._record.value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._record.headers

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def error(self) -> None:
        return None


def _setup() -> tuple[PipelinePlan, dict[str, Predict]]:
    spec = parse_spec(yaml.safe_load(SPEC), base_dir=HERE)
    plan = compile_plan(spec)
    predicts: dict[str, Predict] = {"output": lambda inputs: inputs}
    for node in plan.nodes.values():
        if node.kind is NodeKind.STEP and node.model is not None:
            model = create_model(node.model, spec.models[node.model], spec.base_dir)
            model.load()
            predicts[node.name] = model.predict
    return plan, predicts


def _requests(plan: PipelinePlan, n: int) -> list[Message]:
    out = []
    for i in range(n):
        rid = f"j{i}"
        value = encode_request("fan", {"x": np.array([i], dtype=np.int64)}, id=rid)
        record = OutRecord(plan.inputs_topic, rid, value.SerializeToString(), [])
        out.append(Message(plan.inputs_topic, partition_for(rid.encode(), 3), i, record))
    return out


def _run(stage: StagePlan, predicts: dict[str, Predict], messages: list[Message]) -> Any:
    logic = StageLogic(stage, predicts)
    return logic.process(messages, fetched_ns=0)


def _written(records: list[OutRecord]) -> Counter[tuple[str, str, bytes | None]]:
    # Where each record goes and what it holds; headers differ only in the call stamp's
    # offsets, which a hand-off has not got yet.
    return Counter((r.topic, r.key, r.value) for r in records)


def test_fused_steps_write_what_the_steps_write_one_by_one() -> None:
    plan, predicts = _setup()
    requests = _requests(plan, 24)
    # One by one: each step reads what the steps before it wrote, as from Kafka.
    unfused: list[OutRecord] = []
    topics: dict[str, list[Message]] = {plan.inputs_topic: requests}
    for unit in plan.units():
        stage = stage_plan(plan, unit)
        fetched = [m for t in stage.source_topics for m in topics.get(t, [])]
        records = _run(stage, predicts, fetched).records
        unfused += records
        for k, r in enumerate(records):
            p = r.partition if r.partition is not None else partition_for(r.key.encode(), 3)
            topics.setdefault(r.topic, []).append(Message(r.topic, p, k, r))
    fused = _run(stage_plan(plan, plan.fused().units()[0]), predicts, requests)
    assert _written(fused.records) == _written(unfused)
    # Every step wrote one record per request to its own topic; the assembler answered
    # every request but 7, which `right` answered with its error.
    counts = {labels[1]: n for labels, n in fused.written}
    assert counts == {s: 24 for s in ("split", "left", "right", "both", "gate", "even", "odd")} | {
        "output": 23
    }
    failed = [r for r in fused.records if r.topic == plan.errors_topic]
    assert [r.key for r in failed] == ["j7"]
    headers = dict(failed[0].headers)
    assert headers["streamdag-source-topic"] == b"streamdag.fan.split.outputs"
    assert headers["streamdag-source-offset"] == b"-1"  # handed on: produced with it
    assert headers["streamdag-source-partition"] == str(partition_for(b"j7", 3)).encode()


def test_a_downstream_step_runs_at_most_its_own_batch_size() -> None:
    plan, predicts = _setup()
    sizes: list[int] = []
    left = predicts["left"]

    def counted(inputs: Any) -> Any:
        sizes.append(len(inputs["a"]))
        return left(inputs)

    stage = stage_plan(plan, plan.stage(["split", "left"]))
    assert stage.batch.max_size == 64  # split's: the entry step's
    _run(stage, {**predicts, "left": counted}, _requests(plan, 10))
    assert sizes == [4, 4, 2]
