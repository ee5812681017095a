"""The compiled plan of a pipeline: its nodes (the output assembler among them), their
groups, topics, joins, batching, retries and models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamdag.errors import ConfigError, SpecError
from streamdag.pipeline import (
    OUTPUT_JOIN,
    JoinMode,
    NodeKind,
    PipelinePlan,
    build_graph,
    compile_plan,
    gateway_group,
    parse_spec,
)

HERE = Path(__file__).parent


def plan_of(score_reads: str = "clean.outputs", **extra: Any) -> PipelinePlan:
    """pipeline -> clean -> {tags, score}; tags joins clean and the inputs (outer)."""
    data: dict[str, Any] = {
        "name": "triage",
        "partitions": 3,
        "retry": {"max_attempts": 4},
        "models": {
            "m": {"runtime": "python", "handler": "handlers:identity", "timeout_ms": 1500},
            "b": {
                "runtime": "python",
                "handler": "handlers:identity",
                "batch": {"max_size": 16, "max_wait_ms": 3},
            },
        },
        "steps": [
            {"name": "clean", "model": "m"},
            {
                "name": "tags",
                "model": "b",
                "inputs": ["clean.outputs", "pipeline.inputs.raw"],
                "join": "outer",
                "join_window_ms": 700,
                "retry": {"max_attempts": 2},
            },
            {"name": "score", "model": "m", "inputs": [score_reads]},
        ],
        **extra,
    }
    return compile_plan(parse_spec(data, base_dir=HERE))


def test_steps_have_their_groups_topics_and_settings() -> None:
    plan = plan_of()
    assert [n.name for n in plan.steps] == ["clean", "tags", "score"]
    clean, tags = plan.node("clean"), plan.node("tags")
    assert clean.kind is NodeKind.STEP and clean.model == "m"
    assert clean.group == "streamdag.triage.clean"
    assert dict(clean.source_topics) == {"streamdag.triage.inputs": "pipeline"}
    assert clean.outputs_topic == "streamdag.triage.clean.outputs"
    assert clean.final_topic is None
    assert clean.join is None and clean.changelog_topic is None
    assert clean.timeout_ms == 1500 and clean.retry.max_attempts == 4
    assert dict(tags.source_topics) == {
        "streamdag.triage.clean.outputs": "clean",
        "streamdag.triage.inputs": "pipeline",
    }
    assert tags.join is JoinMode.OUTER and tags.join_window_ms == 700
    assert tags.changelog_topic == "streamdag.triage.tags.join-state"
    assert (tags.batch.max_size, tags.batch.max_wait_ms) == (16, 3)
    assert tags.retry.max_attempts == 2 and tags.timeout_ms is None


def test_several_output_steps_get_an_assembler_node() -> None:
    plan = plan_of(output={"join": "any", "join_window_ms": 900})
    assembler = plan.assembler
    assert assembler is not None and list(plan.nodes)[-1] == OUTPUT_JOIN
    assert assembler.kind is NodeKind.ASSEMBLER and assembler.model is None
    assert assembler.group == "streamdag.triage.output"
    assert assembler.sources == ("tags", "score")
    assert assembler.outputs_topic == assembler.final_topic == "streamdag.triage.outputs"
    assert assembler.join is JoinMode.ANY and assembler.join_window_ms == 900
    assert assembler.changelog_topic == "streamdag.triage.output.join-state"
    assert assembler.retry.max_attempts == 1
    assert [n.name for n in plan.steps] == ["clean", "tags", "score"]
    # The graph models it too, after the steps it joins.
    graph = build_graph(plan.spec)
    assert graph.order[-1] == OUTPUT_JOIN and graph.steps == ("clean", "tags", "score")
    assert graph.downstream("score") == [OUTPUT_JOIN]
    topics = [t.name for t in plan.topics()]
    assert "streamdag.triage.output.join-state" in topics
    assert "streamdag.triage.output.outputs" not in topics


def test_a_sole_output_step_answers_the_caller() -> None:
    plan = plan_of(score_reads="tags.outputs")
    assert plan.assembler is None and list(plan.nodes) == ["clean", "tags", "score"]
    assert plan.node("score").final_topic == "streamdag.triage.outputs"
    assert plan.node("tags").final_topic is None


def test_gateway_group_names_the_pipelines_it_serves() -> None:
    assert gateway_group(["triage"]) == "streamdag.triage.gateway"
    # One group for one set of pipelines, whatever order they were given in.
    assert gateway_group(["b", "a"]) == gateway_group(["a", "b"]) == "streamdag.a+b.gateway"


def test_a_fused_stage_reads_what_no_node_of_it_writes() -> None:
    """Stage clean+tags: tags reads clean's outputs in memory and the inputs from Kafka,
    which clean reads too; score, outside it, reads clean's topic with its own group."""
    plan = plan_of(stages=[["tags", "clean"]])
    (stage,) = plan.stages
    assert stage.nodes == ("clean", "tags")  # topological, whatever the spec's order
    assert stage.name == "clean+tags" and stage.fused
    assert stage.group == "streamdag.triage.clean+tags"
    assert dict(stage.source_topics) == {"streamdag.triage.inputs": "pipeline"}
    assert stage.internal_topics == {"streamdag.triage.clean.outputs"}
    units = plan.units()
    assert [u.name for u in units] == ["clean+tags", "score", "output"]
    assert units[1].group == plan.node("score").group


def test_fused_whole_makes_one_stage_of_every_node() -> None:
    plan = plan_of().fused()
    (whole,) = plan.units()
    assert whole.name == "clean+tags+score+output"
    assert whole.internal_topics == {
        f"streamdag.triage.{step}.outputs" for step in ("clean", "tags", "score")
    }
    assert dict(whole.source_topics) == {"streamdag.triage.inputs": "pipeline"}
    fused = plan_of().fused(["score", "clean"])
    assert [u.name for u in fused.units()] == ["clean+score", "tags", "output"]


def test_a_stage_runs_whole_or_not_at_all() -> None:
    plan = plan_of(stages=[["clean", "tags"]])
    assert [u.name for u in plan.units(["tags", "clean"])] == ["clean+tags"]
    with pytest.raises(ConfigError, match=r"runs fused in stage clean\+tags.*left out: tags"):
        plan.units(["clean"])


@pytest.mark.parametrize(
    ("stages", "problem"),
    [
        ([["clean", "nope"]], r"stages\[0\].*unknown step 'nope'"),
        ([["tags", "score"]], r"stages\[0\].*'score' neither reads nor is read"),
        ([["clean", "tags"], ["tags", "score"]], r"stages\[1\].*'tags' is in stages\[0\]"),
        ([["clean", "clean"]], "named twice"),
        ([[]], "at least one step"),
    ],
)
def test_stages_that_cannot_run_are_refused(stages: list[list[str]], problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        plan_of(stages=stages)
    with pytest.raises(ConfigError, match="cannot fuse"):
        plan_of().stage(stages[-1])
