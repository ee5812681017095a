"""A pipeline compiled once from its spec: every node that consumes records (the steps and
the output assembler), with its consumer group, the topics it reads and writes, how it
joins, batches and retries, and which model it runs; and the fused stages, each a group
of nodes that one worker runs with one consumer group and one transaction.

The engine, the gateway, the serving checks and the views read this plan; none of them
works a name or a shape out of the spec again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from streamdag.errors import ConfigError
from streamdag.kafka.admin import TopicSpec
from streamdag.pipeline.graph import Graph, JoinMode, Node, NodeKind, build_graph, stage_problem
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

__all__ = ["PipelinePlan", "PlanNode", "PlanStage", "compile_plan"]

# Between the node names of a stage's name: no step name holds it, so a stage's consumer
# group is never a step's.
STAGE_JOINER = "+"

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
class PlanStage:
    """Nodes that run fused: one worker process, one consumer group, one transaction per
    commit. The stage consumes the topics its nodes read that none of them writes; what
    a node writes for another node of the stage is also handed to it in memory."""

    name: str  # its nodes' names in topological order, joined by "+"
    nodes: tuple[str, ...]  # topological
    group: str  # its consumer group, of its own: never a node's
    source_topics: Mapping[str, str]  # topic -> source, of the topics it consumes
    internal_topics: frozenset[str]  # topics a node of it writes and another reads

    @property
    def fused(self) -> bool:
        """Whether it holds several nodes; a stage of one is that node's own worker."""
        return len(self.nodes) > 1


@dataclass(frozen=True)
class PipelinePlan:
    spec: PipelineSpec
    nodes: Mapping[str, PlanNode]  # topological: every node after its sources; assembler last
    inputs_topic: str
    outputs_topic: str
    errors_topic: str
    stages: tuple[PlanStage, ...] = ()  # the fused stages (spec ``stages:``, or ``fused``)

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

    def stage(self, nodes: Sequence[str]) -> PlanStage:
        """The stage of ``nodes`` (in any order). Raises ConfigError if they cannot run as
        one: an unknown node, or nodes that hand nothing on to each other."""
        problem = stage_problem(self.spec, list(nodes))
        if problem is not None:
            raise ConfigError(f"cannot fuse {', '.join(nodes)}: {problem}")
        ordered = tuple(n for n in self.nodes if n in set(nodes))
        members = [self.nodes[n] for n in ordered]
        written = {n.outputs_topic for n in members}
        read = {t: s for n in members for t, s in n.source_topics.items()}
        return PlanStage(
            name=STAGE_JOINER.join(ordered),
            nodes=ordered,
            group=consumer_group(self.name, STAGE_JOINER.join(ordered)),
            source_topics={t: s for t, s in read.items() if t not in written},
            internal_topics=frozenset(t for t in read if t in written),
        )

    def fused(self, nodes: Sequence[str] | None = None) -> PipelinePlan:
        """This plan with ``nodes`` (every node when None) as its only fused stage."""
        return replace(self, stages=(self.stage(list(nodes or self.nodes)),))

    def units(self, nodes: Sequence[str] | None = None) -> list[PlanStage]:
        """What runs ``nodes`` (every node when None), each once: the fused stage a node
        belongs to, else a stage of the node alone. Raises ConfigError when ``nodes``
        names only part of a fused stage: its other nodes would have no worker, or one of
        another group reading the same records."""
        chosen = list(nodes or self.nodes)
        units: list[PlanStage] = []
        for name in self.nodes:
            if name not in chosen:
                continue
            stage = next((s for s in self.stages if name in s.nodes), None)
            if stage is None:
                units.append(self.stage([name]))
            elif stage not in units:
                left_out = [n for n in stage.nodes if n not in chosen]
                if left_out:
                    raise ConfigError(
                        f"step {name} runs fused in stage {stage.name}: name all of "
                        f"{', '.join(stage.nodes)} or none (left out: {', '.join(left_out)})"
                    )
                units.append(stage)
        return units


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
    plan = PipelinePlan(
        spec=spec,
        nodes={name: _node(spec, graph, graph.nodes[name]) for name in graph.order},
        inputs_topic=inputs_topic(spec.name),
        outputs_topic=outputs_topic(spec.name),
        errors_topic=errors_topic(spec.name),
    )
    return replace(plan, stages=tuple(plan.stage(nodes) for nodes in spec.stages))
