"""The latency benchmark's critical path: which source held each step up, and each step's
time from the record that made it ready to the record it wrote (benchmarks/_hops.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streamdag.pipeline import compile_plan, load_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _hops import critical_paths

SPEC = """
name: fan
models:
  m: {runtime: python, handler: "steps:f", outputs: [y]}
steps:
  - {name: a, model: m}
  - {name: b, model: m, inputs: [a.outputs.y]}
  - {name: c, model: m, inputs: [a.outputs.y]}
  - {name: d, model: m, inputs: [b.outputs, c.outputs], join: inner}
"""


@pytest.fixture
def plan(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "steps.py").write_text("def f(inputs):\n    return inputs\n")
    path = tmp_path / "fan.yaml"
    path.write_text(SPEC)
    return compile_plan(load_spec(path))


def test_the_slower_branch_is_the_critical_path(plan) -> None:  # type: ignore[no-untyped-def]
    t = plan.nodes
    stamps = {
        plan.inputs_topic: {"r1": 1_000, "r2": 2_000},
        t["a"].outputs_topic: {"r1": 1_003, "r2": 2_002},
        t["b"].outputs_topic: {"r1": 1_010, "r2": 2_030},  # r2: b is slow
        t["c"].outputs_topic: {"r1": 1_020, "r2": 2_008},  # r1: c is slow
        t["d"].outputs_topic: {"r1": 1_025, "r2": 2_034},
    }
    calls = [("r1", 0.999, 1.030), ("r2", 1.999, 2.040)]
    report = critical_paths(plan, stamps, calls)

    assert report["critical_paths"] == [
        [["a", 3.0], ["c", 17.0], ["d", 5.0]],
        [["a", 2.0], ["b", 28.0], ["d", 4.0]],
    ]
    nodes = report["nodes"]
    assert nodes["a"]["on_critical_path"] == 2 and nodes["d"]["on_critical_path"] == 2
    assert nodes["b"]["on_critical_path"] == 1 and nodes["c"]["on_critical_path"] == 1
    assert nodes["b"]["median_ms"] == pytest.approx((7 + 28) / 2)
    assert report["gateway_produce_ms"]["median_ms"] == pytest.approx(1.0)
    assert report["reply_read_ms"]["median_ms"] == pytest.approx((5 + 6) / 2)


def test_a_request_missing_from_a_topic_is_left_out(plan) -> None:  # type: ignore[no-untyped-def]
    t = plan.nodes
    stamps = {plan.inputs_topic: {"r1": 1_000}} | {t[n].outputs_topic: {} for n in "abcd"}
    assert critical_paths(plan, stamps, [("r1", 0.999, 1.030)])["requests"] == 0
