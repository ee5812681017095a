"""A pipeline compiled once from its spec: every node that consumes records (the steps and
the output assembler), with its consumer group, the topics it reads and writes, how it
joins, batches and retries, and which model it runs.

The engine, the gateway, the serving checks and the views read this plan; none of them
works a name or a shape out of the spec again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streamdag.kafka.admin import TopicSpec
from streamdag.pipeline.graph import Graph, JoinMode, Node, NodeKind, build_graph
from streamdag.pipeline.spec import InputRef, PipelineSpec, RetryConfig
from streamdag.pipeline.topics import (
    consumer_group,
    derive_topics,
    errors_topic,
    inputs_topic,
    join_state_topic,
    outputs_topic,
    source_topic,
    step_outputs_topic,
)
from streamdag.runtimes.config import BatchConfig, RuntimeSpec

__all__ = ["PipelinePlan", "PlanNode", "compile_plan"]

# The assembler runs no model: a failure is the pieces' own, so there is nothing to retry.
_NO_RETRY = RetryConfig(max_attempts=1)


@dataclass(frozen=True)
class PlanNode:
    """One consumer of the pipeline: a step, or the output assembler."""

    name: str
    kind: NodeKind
    model: str | None  # its model's name in the spec's ``models``; None for the assembler
    group: str  # its consumer group
    source_topics: Mapping[str, str]  # topic -> source ("pipeline" or a step name)
    refs: tuple[InputRef, ...]  # the inputs it takes from each source
    tensor_map: Mapping[str, str]
    triggers: tuple[InputRef, ...]
    outputs_topic: str  # its results; the pipeline's outputs for the assembler and a step
    # that answers alone (read by no other node): each result is written once
    final_topic: str | None  # the pipeline's outputs topic, if this node answers the caller
    join: JoinMode | None  # None: a single source, no join state
    join_window_ms: int
    changelog_topic: str | None  # its compacted join state, for a join
    batch: BatchConfig
    retry: RetryConfig
    timeout_ms: int | None  # of one model call

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.source_topics.values())


@dataclass(frozen=True)
class PipelinePlan:
    spec: PipelineSpec
    nodes: Mapping[str, PlanNode]  # topological: every node after its sources; assembler last
    inputs_topic: str
    outputs_topic: str
    errors_topic: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return str(self.spec.version)

    @property
    def guarantee(self) -> str:
        return self.spec.guarantee

    @property
    def partitions(self) -> int:
        """Of every topic of the pipeline: they are co-partitioned."""
        return self.spec.partitions

    @property
    def timeout_ms(self) -> int:
        """How long a caller waits for the reply."""
        return self.spec.timeout_ms

    @property
    def steps(self) -> list[PlanNode]:
        return [n for n in self.nodes.values() if n.kind is NodeKind.STEP]

    @property
    def assembler(self) -> PlanNode | None:
        """The join of several output steps into the final response, if there is one."""
        return next((n for n in self.nodes.values() if n.kind is NodeKind.ASSEMBLER), None)

    @property
    def output_steps(self) -> list[str]:
        """The steps whose results make up the final response."""
        return self.spec.output_steps

    def node(self, name: str) -> PlanNode:
        return self.nodes[name]

    def model_spec(self, node: PlanNode) -> RuntimeSpec | None:
        return None if node.model is None else self.spec.models[node.model]

    def topics(self) -> list[TopicSpec]:
        """Every topic of the pipeline, as ``streamdag topics --create`` makes them."""
        return derive_topics(self.spec)


def _node(spec: PipelineSpec, graph: Graph, node: Node) -> PlanNode:
    p = spec.name
    final = outputs_topic(p)
    sources = {source_topic(p, s): s for s in node.sources}
    changelog = join_state_topic(p, node.name) if node.is_join else None
    if node.spec is None:  # the assembler: its joined pieces are the final response
        return PlanNode(
            name=node.name,
            kind=node.kind,
            model=None,
            group=consumer_group(p, node.name),
            source_topics=sources,
            refs=tuple(InputRef(source=s) for s in node.sources),
            tensor_map={},
            triggers=(),
            outputs_topic=final,
            final_topic=final,
            join=node.join,
            join_window_ms=node.join_window_ms,
            changelog_topic=changelog,
            batch=BatchConfig(),
            retry=_NO_RETRY,
            timeout_ms=None,
        )
    step = node.spec
    model = spec.models[step.model]
    return PlanNode(
        name=node.name,
        kind=node.kind,
        model=step.model,
        group=consumer_group(p, node.name),
        source_topics=sources,
        refs=tuple(step.input_refs),
        tensor_map=dict(step.tensor_map),
        triggers=tuple(step.trigger_refs),
        outputs_topic=final if graph.answers_alone(node.name) else step_outputs_topic(p, node.name),
        final_topic=final if spec.output_steps == [node.name] else None,
        join=node.join,
        join_window_ms=node.join_window_ms,
        changelog_topic=changelog,
        batch=model.batch,
        retry=step.retry or spec.retry,
        timeout_ms=model.timeout_ms,
    )


def compile_plan(spec: PipelineSpec) -> PipelinePlan:
    """The plan of a spec that passed validation (``load_spec`` and ``parse_spec`` check)."""
    graph = build_graph(spec)
    return PipelinePlan(
        spec=spec,
        nodes={name: _node(spec, graph, graph.nodes[name]) for name in graph.order},
        inputs_topic=inputs_topic(spec.name),
        outputs_topic=outputs_topic(spec.name),
        errors_topic=errors_topic(spec.name),
    )
