"""What a step makes of its input records, without Kafka: tensor maps, triggers, markers,
failures, every join mode and its expiry, the output assembler and the size limit.
Records in are envelopes as the worker decodes them; records out are what it would write."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from streamdag.engine.envelope import Envelope, OutRecord
from streamdag.engine.logic import StepLogic
from streamdag.engine.plan import StepPlan, step_plan
from streamdag.errors import InvalidInput
from streamdag.kafka import headers as h
from streamdag.pipeline import compile_plan, parse_spec
from streamdag.protocol import decode_response, encode_response, response_from_bytes

HERE = Path(__file__).parent
Arrays = dict[str, np.ndarray]

SPEC = """
name: clinic
version: 2
partitions: 2
retry: {max_attempts: 3, backoff_ms: 0}
models:
  clean: {runtime: python, handler: "dag_models:split", outputs: [a, b]}
  gate: {runtime: python, handler: "dag_models:route", outputs: [x, even, odd]}
  mark: {runtime: python, handler: "dag_models:mark_even", outputs: [kind]}
  score: {runtime: python, handler: "dag_models:combine", outputs: [total, parts]}
steps:
  - {name: clean, model: clean, tensor_map: {pipeline.inputs.raw: x}}
  - {name: gate, model: gate, inputs: [pipeline.inputs]}
  - {name: even, model: mark, inputs: [gate.outputs.x], when: [gate.outputs.even]}
  - name: both
    model: score
    inputs: [clean.outputs.a, gate.outputs.x]
    tensor_map: {clean.outputs.a: l, gate.outputs.x: r}
    join: JOIN
    join_window_ms: 1000
"""

TWO_OUTPUTS = """
name: twin
partitions: 2
models:
  m: {runtime: python, handler: "dag_models:left", outputs: [l]}
steps:
  - {name: first, model: m, tensor_map: {pipeline.inputs.x: a}}
  - {name: second, model: m, tensor_map: {pipeline.inputs.x: a}}
"""


def plan_of(text: str, node: str, **kwargs: Any) -> StepPlan:
    spec = parse_spec(yaml.safe_load(text), base_dir=HERE)
    return step_plan(compile_plan(spec), node, **kwargs)


def clinic(node: str, join: str = "inner", **kwargs: Any) -> StepPlan:
    return plan_of(SPEC.replace("JOIN", join), node, **kwargs)


class Model:
    """A predict function that records its calls and fails rows it is told to."""

    def __init__(self, fn: Callable[[Arrays], Arrays], poison: int | None = None) -> None:
        self.fn = fn
        self.poison = poison
        self.calls: list[Arrays] = []

    def __call__(self, inputs: Arrays) -> Arrays:
        self.calls.append(inputs)
        if self.poison is not None and any(
            np.any(a == self.poison) for a in inputs.values() if a.dtype != object
        ):
            raise ValueError(f"cannot take {self.poison}")
        return self.fn(inputs)


def envelope(
    plan: StepPlan,
    source: str,
    rid: str,
    arrays: Arrays | None = None,
    *,
    headers: h.Headers | None = None,
    problem: InvalidInput | None = None,
    partition: int = 0,
) -> Envelope:
    """A record of ``source`` (``pipeline`` or a step) as the worker decodes it."""
    topic = next(t for t, s in plan.source_topics.items() if s == source)
    arrays = arrays or {}
    value = encode_response(source, arrays, id=rid).SerializeToString()
    all_headers: h.Headers = [(h.REQUEST_TS, b"1000"), (h.CALL, b"0-1"), *(headers or [])]
    env = Envelope(topic, partition, 7, rid, all_headers, value, problem=problem)
    env.arrays = arrays
    env.request_ts_ms = 1000
    return env


def by_topic(records: list[OutRecord]) -> dict[str, list[OutRecord]]:
    out: dict[str, list[OutRecord]] = {}
    for r in records:
        out.setdefault(r.topic, []).append(r)
    return out


def tensors(record: OutRecord) -> Arrays:
    assert record.value is not None
    return decode_response(response_from_bytes(record.value))


def error_of(record: OutRecord) -> dict[str, Any]:
    raw = h.get_header(record.headers, h.ERROR)
    assert raw is not None, "not an error record"
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


X = np.array([3], dtype=np.int64)


# -- a single-source step ---------------------------------------------------------------


def test_a_step_renames_its_inputs_and_writes_its_results_to_its_outputs() -> None:
    plan = clinic("clean")
    model = Model(lambda i: {"a": i["x"] + 1, "b": i["x"] * 10})
    logic = StepLogic(plan, model)
    records = logic.process([envelope(plan, "pipeline", "r1", {"raw": X})])
    assert [set(call) for call in model.calls] == [{"x"}]  # raw arrived as x (tensor_map)
    (record,) = records
    assert (record.topic, record.key) == (plan.outputs_topic, "r1")
    assert {k: v.tolist() for k, v in tensors(record).items()} == {"a": [4], "b": [30]}
    assert h.get_header(record.headers, h.CALL) == "0-1"  # carried for the next step


def test_compatible_requests_run_as_one_micro_batch_and_get_their_own_rows() -> None:
    plan = clinic("clean")
    model = Model(lambda i: {"a": i["x"] + 1, "b": i["x"] * 10})
    logic = StepLogic(plan, model)
    envs = [envelope(plan, "pipeline", f"r{n}", {"raw": np.array([n])}) for n in range(5)]
    records = logic.process(envs)
    assert len(model.calls) == 1 and model.calls[0]["x"].tolist() == [0, 1, 2, 3, 4]
    assert [(r.key, tensors(r)["a"].tolist()) for r in records] == [
        (f"r{n}", [n + 1]) for n in range(5)
    ]


def test_a_sole_output_step_also_answers_the_caller_on_the_waiting_partition() -> None:
    plan = plan_of(TWO_OUTPUTS.replace("  - {name: second", "  # - "), "first")
    logic = StepLogic(plan, Model(lambda i: {"l": i["a"] * 2}))
    env = envelope(plan, "pipeline", "r1", {"x": X}, headers=[(h.REPLY_TO, b"1")])
    out = by_topic(logic.process([env]))
    (final,) = out[plan.replies_topic]
    assert final.partition == 1  # where the gateway that sent it reads
    assert tensors(final)["l"].tolist() == [6]
    assert h.get_header(final.headers, h.STEP) == "first"


def test_a_poison_request_fails_alone_and_every_failure_is_visible_three_ways() -> None:
    plan = clinic("clean")
    model = Model(lambda i: {"a": i["x"] + 1, "b": i["x"] * 10}, poison=13)
    logic = StepLogic(plan, model)
    envs = [envelope(plan, "pipeline", f"r{n}", {"raw": np.array([n])}) for n in (12, 13, 14)]
    out = by_topic(logic.process(envs))
    results = [r for r in out[plan.outputs_topic] if h.get_header(r.headers, h.ERROR) is None]
    assert [r.key for r in results] == ["r12", "r14"]
    (failed,) = out[plan.errors_topic]
    assert failed.value == envs[1].value  # the request as it arrived, for a replay
    assert error_of(failed) == {
        "code": "model_error",
        "message": "ValueError: cannot take 13",
        "step": "clean",
        "attempts": 3,
    }
    (reply,) = out[plan.replies_topic]  # the caller hears at once
    assert reply.key == "r13" and error_of(reply)["step"] == "clean"
    (marker,) = [r for r in out[plan.outputs_topic] if r.key == "r13"]
    assert error_of(marker)["code"] == "model_error"  # downstream steps let it go


def test_an_undecodable_record_fails_without_calling_the_model() -> None:
    plan = clinic("clean")
    model = Model(lambda i: i)
    env = envelope(plan, "pipeline", "r1", problem=InvalidInput("cannot decode record: junk"))
    out = by_topic(StepLogic(plan, model).process([env]))
    assert model.calls == []
    assert error_of(out[plan.errors_topic][0])["code"] == "invalid_argument"
    assert error_of(out[plan.replies_topic][0])["attempts"] == 0


def test_a_missing_input_tensor_is_invalid_input_not_a_model_error() -> None:
    plan = clinic("even")  # takes gate.outputs.x
    model = Model(lambda i: i)
    env = envelope(plan, "gate", "r1", {"even": np.array([True])})
    out = by_topic(StepLogic(plan, model).process([env]))
    assert model.calls == []
    error = error_of(out[plan.errors_topic][0])
    assert error["code"] == "invalid_argument" and "gate.outputs.x" in error["message"]


def test_upstream_error_and_skip_markers_are_passed_on_without_the_model() -> None:
    plan = clinic("even")
    model = Model(lambda i: {"kind": np.array([b"even"], dtype=object)})
    info = h.ErrorInfo("model_error", "boom", "gate", 3)
    failed = envelope(plan, "gate", "r1", headers=[(h.ERROR, info.encode())])
    failed.error = info
    skipped = envelope(plan, "gate", "r2", headers=[(h.SKIPPED, b"1")])
    records = StepLogic(plan, model).process([failed, skipped])
    assert model.calls == []
    assert [(r.topic, r.key) for r in records] == [
        (plan.outputs_topic, "r1"),
        (plan.outputs_topic, "r2"),
    ]
    assert error_of(records[0]) == info.__dict__
    assert h.get_header(records[1].headers, h.SKIPPED) == "1"
    assert not [r for r in records if r.topic == plan.errors_topic]  # reported once, upstream


# -- triggers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("even", "runs"), [([True], True), ([False], False), (None, False)], ids=str
)
def test_a_trigger_fires_only_when_its_tensor_arrived_all_true(
    even: list[bool] | None, runs: bool
) -> None:
    plan = clinic("even")
    model = Model(lambda i: {"kind": np.array([b"even"], dtype=object)})
    arrays = {"x": np.array([4])}
    if even is not None:
        arrays["even"] = np.array(even)
    (record,) = StepLogic(plan, model).process([envelope(plan, "gate", "r1", arrays)])
    assert (len(model.calls) == 1) is runs
    if runs:
        assert set(model.calls[0]) == {"x"}  # the trigger tensor is not an input
        assert tensors(record)["kind"].tolist() == [b"even"]
    else:
        assert h.get_header(record.headers, h.SKIPPED) == "1"


# -- joins ------------------------------------------------------------------------------


def both(join: str, **kwargs: Any) -> tuple[StepPlan, Model, StepLogic]:
    plan = clinic("both", join, **kwargs)
    model = Model(lambda i: {"total": i.get("l", 0) + i.get("r", 0), "parts": np.array([2])})
    return plan, model, StepLogic(plan, model)


def test_an_inner_join_runs_once_both_pieces_are_in_with_inputs_from_each() -> None:
    plan, model, logic = both("inner")
    waiting = logic.process([envelope(plan, "clean", "r1", {"a": np.array([4])})], now_ms=0)
    assert model.calls == []
    assert [r.topic for r in waiting] == [plan.changelog_topic]  # the piece, kept in Kafka
    records = logic.process([envelope(plan, "gate", "r1", {"x": X})], now_ms=10)
    assert [{k: v.tolist() for k, v in c.items()} for c in model.calls] == [{"l": [4], "r": [3]}]
    results = [r for r in records if r.topic == plan.outputs_topic]
    assert [tensors(r)["total"].tolist() for r in results] == [[7]]
    assert logic.join is not None and logic.join.entries == {}


def test_an_inner_join_past_its_window_fails_naming_what_never_came() -> None:
    plan, model, logic = both("inner")
    logic.process([envelope(plan, "clean", "r1", {"a": np.array([4])})], now_ms=0)
    assert not logic.due(999)
    assert logic.due(1000)
    out = by_topic(logic.process([], now_ms=1000))
    assert model.calls == []
    error = error_of(out[plan.replies_topic][0])
    assert error["code"] == "deadline_exceeded" and "gate" in error["message"]


def test_an_outer_join_past_its_window_runs_with_what_arrived() -> None:
    plan, model, logic = both("outer")
    logic.process([envelope(plan, "gate", "r1", {"x": X})], now_ms=0)
    records = logic.process([], now_ms=1000)
    assert [set(c) for c in model.calls] == [{"r"}]
    (result,) = [r for r in records if r.topic == plan.outputs_topic]
    assert tensors(result)["total"].tolist() == [3]


def test_an_any_join_runs_the_first_piece_and_ignores_the_late_one() -> None:
    plan, model, logic = both("any")
    first = logic.process([envelope(plan, "gate", "r1", {"x": X})], now_ms=0)
    late = logic.process([envelope(plan, "clean", "r1", {"a": np.array([4])})], now_ms=5)
    assert [set(c) for c in model.calls] == [{"r"}]
    assert [r.key for r in first if r.topic == plan.outputs_topic] == ["r1"]
    assert [r for r in late if r.topic == plan.outputs_topic] == []


def test_a_failed_piece_fails_the_join_at_once_without_the_model() -> None:
    plan, model, logic = both("inner")
    info = h.ErrorInfo("model_error", "boom", "gate", 2)
    failed = envelope(plan, "gate", "r1", headers=[(h.ERROR, info.encode())])
    failed.error = info
    records = logic.process([failed], now_ms=0)
    assert model.calls == []
    assert [error_of(r)["step"] for r in records if r.topic == plan.outputs_topic] == ["gate"]


def test_join_pieces_too_large_for_a_changelog_record_fail_the_request() -> None:
    plan, model, logic = both("inner", max_record_bytes=2_000)
    big = np.zeros(1_000, dtype=np.int64)  # 8 KB: no changelog record can hold it
    out = by_topic(logic.process([envelope(plan, "clean", "r1", {"a": big})], now_ms=0))
    assert model.calls == []
    assert error_of(out[plan.replies_topic][0])["code"] == "resource_exhausted"


# -- the output assembler and the size limit --------------------------------------------


def test_the_assembler_answers_with_every_output_step_same_names_kept_apart() -> None:
    plan = plan_of(TWO_OUTPUTS, "output")
    logic = StepLogic(plan, lambda inputs: inputs)  # its answer is the joined tensors
    envs = [
        envelope(plan, "second", "r1", {"l": np.array([20])}),
        envelope(plan, "first", "r1", {"l": np.array([10])}),
    ]
    records = logic.process(envs, now_ms=0)
    answers = [r for r in records if r.topic == plan.replies_topic]
    assert [r.key for r in answers] == ["r1"]
    assert {k: v.tolist() for k, v in tensors(answers[0]).items()} == {
        "first.l": [10],
        "second.l": [20],
    }
    assert not [r for r in records if r.topic not in (plan.replies_topic, plan.changelog_topic)]


def test_a_result_too_large_for_a_record_fails_its_own_request_only() -> None:
    plan = clinic("clean", max_record_bytes=4_000)
    big = np.zeros(2_000, dtype=np.int64)

    def model(i: Arrays) -> Arrays:
        wide = np.where(i["x"][:, None] == 1, big[None, :], 0)
        return {"a": wide, "b": i["x"]}

    envs = [envelope(plan, "pipeline", f"r{n}", {"raw": np.array([n])}) for n in (0, 1)]
    out = by_topic(StepLogic(plan, model).process(envs))
    # Each row's result is 16 KB (one batch, one shape); both fail, naming the limit.
    errors = [error_of(r) for r in out[plan.replies_topic]]
    assert [e["code"] for e in errors] == ["resource_exhausted", "resource_exhausted"]
    assert "4,000-byte limit" in errors[0]["message"]
    assert all(r.value != b"" for r in out[plan.errors_topic])
