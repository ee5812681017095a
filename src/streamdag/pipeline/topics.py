"""Derived topic and consumer-group names (docs/architecture.md, "Topics")."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from streamdag.kafka.admin import TopicSpec
from streamdag.pipeline.graph import OUTPUT_JOIN, build_graph
from streamdag.pipeline.spec import PIPELINE_SOURCE, PipelineSpec

__all__ = [
    "OUTPUT_JOIN",
    "TOPICS_PREFIX",
    "consumer_group",
    "derive_topics",
    "errors_topic",
    "gateway_group",
    "inputs_topic",
    "join_state_topic",
    "outputs_topic",
    "restore_group",
    "source_topic",
    "step_outputs_topic",
    "topics_glob",
]

PREFIX = "streamdag"
TOPICS_PREFIX = f"{PREFIX}."  # every topic of every pipeline starts with it


def inputs_topic(pipeline: str) -> str:
    return f"{PREFIX}.{pipeline}.inputs"


def outputs_topic(pipeline: str) -> str:
    return f"{PREFIX}.{pipeline}.outputs"


def errors_topic(pipeline: str) -> str:
    return f"{PREFIX}.{pipeline}.errors"


def topics_glob(pipeline: str) -> str:
    """A pattern matching every topic of the pipeline, for messages."""
    return f"{PREFIX}.{pipeline}.*"


def step_outputs_topic(pipeline: str, step: str) -> str:
    return f"{PREFIX}.{pipeline}.{step}.outputs"


def join_state_topic(pipeline: str, step: str) -> str:
    return f"{PREFIX}.{pipeline}.{step}.join-state"


def consumer_group(pipeline: str, step: str) -> str:
    return f"{PREFIX}.{pipeline}.{step}"


def gateway_group(pipelines: Iterable[str]) -> str:
    """The consumer group of the gateways serving ``pipelines`` on their outputs topics:
    ``streamdag.<p>.gateway`` for one pipeline, ``streamdag.<a>+<b>.gateway`` (names
    sorted) for several, so gateways serving different sets never share a group."""
    return f"{PREFIX}.{'+'.join(sorted(pipelines))}.gateway"


def restore_group(changelog_topic: str) -> str:
    """A group of its own for one read of a join's changelog: its partitions are assigned,
    never subscribed, and nothing is committed."""
    return f"{changelog_topic}.restore.{uuid.uuid4().hex[:8]}"


def source_topic(pipeline: str, source: str) -> str:
    """The topic a step reads for a source (``pipeline`` or a step name)."""
    if source == PIPELINE_SOURCE:
        return inputs_topic(pipeline)
    return step_outputs_topic(pipeline, source)


def derive_topics(spec: PipelineSpec) -> list[TopicSpec]:
    """Every topic of the pipeline, co-partitioned: inputs, step outputs, join state,
    errors, outputs — in DAG order."""
    p, n = spec.name, spec.partitions
    graph = build_graph(spec)
    topics = [TopicSpec(inputs_topic(p), n)]
    for name in graph.order:
        # The assembler, and a step that answers alone, write the pipeline's outputs topic.
        if name in graph.steps and not graph.answers_alone(name):
            topics.append(TopicSpec(step_outputs_topic(p, name), n))
        if graph.nodes[name].is_join:
            topics.append(TopicSpec(join_state_topic(p, name), n, compacted=True))
    topics.append(TopicSpec(errors_topic(p), n))
    topics.append(TopicSpec(outputs_topic(p), n))
    return topics
