"""Step plans derived from a spec: topics, group, retry policy, tensor selection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamdag.engine.batching import RetryPolicy
from streamdag.engine.plan import step_plan
from streamdag.errors import InvalidInput
from streamdag.pipeline import PipelineSpec, compile_plan, parse_spec

HERE = Path(__file__).parent


def linear_spec(**extra: Any) -> dict[str, Any]:
    """pipeline -> clean -> {sections, language}; sections and language are outputs."""
    return {
        "name": "triage",
        "version": 3,
        "guarantee": "at_least_once",
        "partitions": 2,
        "retry": {"max_attempts": 5, "backoff_ms": 50, "max_backoff_ms": 1000},
        "models": {
            "cleaner": {
                "runtime": "python",
                "handler": "plan_handlers:identity",
                "outputs": ["text", "lang"],
            },
            "classify": {
                "runtime": "python",
                "handler": "plan_handlers:identity",
                "timeout_ms": 2500,
                "batch": {"max_size": 8, "max_wait_ms": 2},
            },
        },
        "steps": [
            {
                "name": "clean",
                "model": "cleaner",
                "tensor_map": {"pipeline.inputs.raw": "text"},
            },
            {
                "name": "sections",
                "model": "classify",
                "inputs": ["clean.outputs.text"],
                "tensor_map": {"clean.outputs.text": "body"},
                "retry": {"max_attempts": 2, "backoff_ms": 10, "max_backoff_ms": 20},
            },
            {
                "name": "language",
                "model": "classify",
                "inputs": ["clean.outputs"],
                "tensor_map": {"clean.outputs.lang": "language"},
            },
        ],
        **extra,
    }


def spec_of(data: dict[str, Any]) -> PipelineSpec:
    return parse_spec(data, base_dir=HERE)


TEXT = np.array([b"some text"], dtype=object)
LANG = np.array([b"en"], dtype=object)


def test_first_step_reads_the_inputs_topic_and_writes_its_own_outputs() -> None:
    plan = step_plan(compile_plan(spec_of(linear_spec())), "clean")
    assert plan.pipeline == "triage"
    assert plan.version == "3"
    assert plan.guarantee == "at_least_once"
    assert plan.model == "cleaner"
    assert plan.group_id == "streamdag.triage.clean"
    assert plan.source_topics == {"streamdag.triage.inputs": "pipeline"}
    assert plan.is_request_topic("streamdag.triage.inputs")
    assert plan.outputs_topic == "streamdag.triage.clean.outputs"
    assert plan.errors_topic == "streamdag.triage.errors"
    assert plan.replies_topic == "streamdag.triage.outputs"
    assert plan.final_topic is None  # other steps read it: not an output step
    assert plan.join is None


def test_downstream_step_reads_its_source_step_topic() -> None:
    plan = step_plan(compile_plan(spec_of(linear_spec())), "sections")
    assert plan.group_id == "streamdag.triage.sections"
    assert plan.source_topics == {"streamdag.triage.clean.outputs": "clean"}
    assert not plan.is_request_topic("streamdag.triage.clean.outputs")
    assert not plan.is_request_topic("streamdag.triage.inputs")
    assert plan.outputs_topic == "streamdag.triage.sections.outputs"
    assert plan.batch.max_size == 8 and plan.batch.max_wait_ms == 2
    assert plan.timeout_s == 2.5


def test_a_sole_output_step_also_writes_the_pipeline_outputs() -> None:
    data = linear_spec(output={"steps": ["sections"]})
    # language feeds sections, so sections is the sole output step.
    data["steps"][1]["inputs"] = ["clean.outputs.text", "language.outputs"]
    data["steps"][1]["tensor_map"] = {"clean.outputs.text": "body"}
    plan = step_plan(compile_plan(spec_of(data)), "sections")
    assert plan.final_topic == "streamdag.triage.outputs"
    assert step_plan(compile_plan(spec_of(data)), "language").final_topic is None


def test_no_step_writes_the_pipeline_outputs_when_several_are_outputs() -> None:
    spec = spec_of(linear_spec())
    assert spec.output_steps == ["sections", "language"]
    assert step_plan(compile_plan(spec), "sections").final_topic is None
    assert step_plan(compile_plan(spec), "language").final_topic is None


def test_step_retry_overrides_the_pipeline_retry() -> None:
    spec = spec_of(linear_spec())
    assert step_plan(compile_plan(spec), "sections").retry == RetryPolicy(2, 10, 20)
    assert step_plan(compile_plan(spec), "clean").retry == RetryPolicy(5, 50, 1000)


def test_default_retry_and_no_timeout_when_the_spec_sets_none() -> None:
    data = linear_spec()
    del data["retry"]
    plan = step_plan(compile_plan(spec_of(data)), "clean")
    assert plan.retry == RetryPolicy()
    assert plan.timeout_s is None


def test_select_takes_the_whole_source_and_renames_by_tensor_map() -> None:
    plan = step_plan(compile_plan(spec_of(linear_spec())), "language")
    picked = plan.select("clean", {"text": TEXT, "lang": LANG})
    assert set(picked) == {"text", "language"}
    assert picked["language"] is LANG
    assert picked["text"] is TEXT


def test_select_takes_one_tensor_and_renames_it() -> None:
    plan = step_plan(compile_plan(spec_of(linear_spec())), "sections")
    picked = plan.select("clean", {"text": TEXT, "lang": LANG})
    assert picked == {"body": TEXT}


def test_select_renames_pipeline_inputs() -> None:
    plan = step_plan(compile_plan(spec_of(linear_spec())), "clean")
    raw = np.array([b"raw"], dtype=object)
    extra = np.zeros(1)
    picked = plan.select("pipeline", {"raw": raw, "extra": extra})
    assert picked == {"text": raw, "extra": extra}


def test_select_ignores_tensors_of_other_sources() -> None:
    plan = step_plan(compile_plan(spec_of(linear_spec())), "sections")
    assert plan.select("pipeline", {"text": TEXT}) == {}


def test_a_missing_tensor_is_invalid_input_naming_the_reference() -> None:
    plan = step_plan(compile_plan(spec_of(linear_spec())), "sections")
    with pytest.raises(InvalidInput) as info:
        plan.select("clean", {"lang": LANG})
    message = info.value.message
    assert "step sections" in message
    assert "clean.outputs.text" in message
    assert "lang" in message  # what the source did have
    assert info.value.code == "invalid_argument"


def test_a_missing_tensor_from_an_empty_source_says_so() -> None:
    plan = step_plan(compile_plan(spec_of(linear_spec())), "sections")
    with pytest.raises(InvalidInput, match="no tensors"):
        plan.select("clean", {})
