"""A micro-batch decoded together runs as columns: one model call on the batch's arrays and
its results encoded together. Whatever the batch holds (layouts, row counts, poison rows,
undecodable records, missing tensors, a model that returns the wrong rows, waiting
gateways), a step writes exactly the records it would write handling each record alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdag.engine.envelope import OutRecord, decode_records
from streamdag.engine.logic import StepLogic
from streamdag.engine.plan import StepPlan, step_plan
from streamdag.kafka import headers as h
from streamdag.pipeline import compile_plan, parse_spec
from streamdag.protocol import encode_request, encode_response
from tests.engine.fake_kafka import FakeMessage

HERE = Path(__file__).parent
Arrays = dict[str, np.ndarray]

SPEC = """
name: rows
partitions: 3
retry: {max_attempts: 2, backoff_ms: 0}
models:
  m: {runtime: python, handler: "dag_models:left", outputs: [l]}
steps:
  - {name: first, model: m, tensor_map: {pipeline.inputs.x: a}}
  - {name: second, model: m, inputs: [first.outputs], tensor_map: {first.outputs.l: a}}
"""

POISON = 7.0  # a row holding it makes the model raise
SHORT = 13.0  # a batch holding it gets one row too few back


def model(inputs: Arrays) -> Arrays:
    a = inputs["a"]
    if np.any(a == POISON):
        raise ValueError("cannot take 7")
    out = a * 2
    return {"l": out[:-1] if np.any(a == SHORT) and len(a) > 1 else out}


def plan(node: str, max_record_bytes: int | None = None) -> StepPlan:
    spec = parse_spec(yaml.safe_load(SPEC), base_dir=HERE)
    if max_record_bytes is None:
        return step_plan(compile_plan(spec), node)
    return step_plan(compile_plan(spec), node, max_record_bytes=max_record_bytes)


# One record of a batch: its kind, its rows, its width, and whether a gateway waits.
items = st.tuples(
    st.sampled_from(["good", "good", "good", "poison", "short", "undecodable", "missing"]),
    st.integers(1, 3),
    st.sampled_from([2, 3, 300]),  # 300 wide: 1.2 KB a row, over a small record limit
    st.booleans(),
)


def messages(node: str, batch: list[tuple[str, int, int, bool]]) -> list[FakeMessage]:
    topic = next(iter(plan(node).source_topics))
    tensor = "x" if node == "first" else "l"
    out = []
    for i, (kind, rows, width, waiting) in enumerate(batch):
        values = np.arange(rows * width, dtype=np.float32).reshape(rows, width) + 20 * i + 20
        if kind in ("poison", "short"):
            values[-1, 0] = POISON if kind == "poison" else SHORT
        arrays = {("other" if kind == "missing" else tensor): values}
        rid = f"r{i}"
        if node == "first":
            value = encode_request("rows", arrays, id=rid).SerializeToString()
        else:
            value = encode_response("m", arrays, id=rid).SerializeToString()
        headers = [(h.REQUEST_TS, b"1000"), ("x-user", f"u{i}".encode())]
        if waiting:
            headers.append((h.REPLY_TO, b"2"))
        if kind == "undecodable":
            value = b"\xff\x00\x07"
        out.append(FakeMessage(value, rid.encode(), list(headers), topic, i % 3, i))
    return out


def run(
    node: str, batch: list[FakeMessage], *, columnar: bool, limit: int | None = None
) -> list[tuple[Any, ...]]:
    step = plan(node, limit)
    logic = StepLogic(step, model)
    logic._columnar = columnar
    envelopes = decode_records(batch, step.is_request_topic, model_name=step.pipeline)
    records = logic.process(envelopes, now_ms=2000.0, fetched_ns=0)
    return sorted(_plain(r) for r in records)


def _plain(record: OutRecord) -> tuple[Any, ...]:
    return (record.topic, record.key, record.value, record.partition, tuple(record.headers))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    batch=st.lists(items, min_size=1, max_size=12),
    node=st.sampled_from(["first", "second"]),
    limit=st.sampled_from([None, 2500]),  # records over 2,500 bytes fail as too large
)
def test_a_batch_run_as_columns_writes_what_each_record_alone_would(
    batch: list[tuple[str, int, int, bool]], node: str, limit: int | None
) -> None:
    records = messages(node, batch)
    columns = run(node, records, columnar=True, limit=limit)
    assert columns == run(node, records, columnar=False, limit=limit)


def test_a_clean_batch_calls_the_model_once_on_all_its_rows() -> None:
    calls: list[int] = []

    def counted(inputs: Arrays) -> Arrays:
        calls.append(len(inputs["a"]))
        return model(inputs)

    step = plan("first")
    batch = messages("first", [("good", 2, 3, False)] * 5)
    envelopes = decode_records(batch, step.is_request_topic, model_name=step.pipeline)
    records = StepLogic(step, counted).process(envelopes)
    assert calls == [10]
    assert sorted(r.key for r in records) == [f"r{i}" for i in range(5)]
