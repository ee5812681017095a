"""A pipeline's inputs and outputs, read from its plan and its models' declarations."""

from __future__ import annotations

import pytest
import yaml

from streamdag.pipeline import PipelinePlan, compile_plan, parse_spec
from streamdag.runtimes import ModelMetadata, TensorSpec
from streamdag.serving.pipeline_metadata import pipeline_inputs, pipeline_outputs

SPEC = """
name: p
models:
  first: {{runtime: python, handler: "math:sqrt"}}
  second: {{runtime: python, handler: "math:sqrt"}}
  left: {{runtime: python, handler: "math:sqrt"}}
  right: {{runtime: python, handler: "math:sqrt"}}
steps:
  - name: a
    model: first
  - name: b
    model: second
    inputs: [pipeline.inputs.note, a.outputs]
    tensor_map: {{pipeline.inputs.note: text}}
  - name: l
    model: left
    inputs: [b.outputs]
  - name: r
    model: right
    inputs: [b.outputs]
output:
  steps: [l, r]
  join: {join}
"""

DECLARED = {
    "first": ModelMetadata("first", "python", [TensorSpec("age", "INT32", [-1, 1])], []),
    "second": ModelMetadata(
        "second",
        "python",
        [TensorSpec("text", "BYTES", []), TensorSpec("x", "FP32", [-1])],
        [TensorSpec("y", "FP32", [-1])],
    ),
    "left": ModelMetadata(
        "left", "python", [], [TensorSpec("score", "FP32", [-1]), TensorSpec("l", "BOOL", [])]
    ),
    "right": ModelMetadata("right", "python", [], [TensorSpec("score", "FP64", [-1])]),
}


def plan(join: str = "inner") -> PipelinePlan:
    return compile_plan(parse_spec(yaml.safe_load(SPEC.format(join=join))))


def test_inputs_are_the_first_steps_under_the_requests_names() -> None:
    inputs = pipeline_inputs(plan(), DECLARED.get)
    # b reads only "note" of the request (its "text"); its "x" comes from a step.
    assert inputs == [TensorSpec("age", "INT32", [-1, 1]), TensorSpec("note", "BYTES", [])]


def test_an_undeclared_first_step_adds_nothing() -> None:
    inputs = pipeline_inputs(plan(), {"second": DECLARED["second"]}.get)
    assert [t.name for t in inputs] == ["note"]


def test_an_inner_output_join_keeps_same_named_tensors_apart() -> None:
    outputs = pipeline_outputs(plan("inner"), DECLARED.get)
    assert outputs == [
        TensorSpec("l.score", "FP32", [-1]),
        TensorSpec("l", "BOOL", []),
        TensorSpec("r.score", "FP64", [-1]),
    ]


@pytest.mark.parametrize("join", ["outer", "any"])
def test_an_outer_output_join_lists_a_name_once(join: str) -> None:
    outputs = pipeline_outputs(plan(join), DECLARED.get)
    assert [t.name for t in outputs] == ["score", "l"]
