"""What one step does, derived once from the spec: topics in and out, tensor selection,
batching and retry policy. Pure; the worker executes it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamdag.engine.batching import RetryPolicy
from streamdag.errors import InvalidInput
from streamdag.kafka import MESSAGE_MAX_BYTES
from streamdag.pipeline import PipelineSpec, build_graph
from streamdag.pipeline.spec import PIPELINE_SOURCE, InputRef
from streamdag.pipeline.topics import (
    OUTPUT_JOIN,
    consumer_group,
    errors_topic,
    join_state_topic,
    outputs_topic,
    source_topic,
    step_outputs_topic,
)
from streamdag.runtimes.config import BatchConfig

__all__ = ["StepPlan", "plan_output", "plan_step"]

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class StepPlan:
    pipeline: str
    version: str
    guarantee: str
    step: str
    model: str
    group_id: str
    source_topics: dict[str, str]  # topic -> source ("pipeline" or a step name)
    refs: tuple[InputRef, ...]
    tensor_map: dict[str, str]
    triggers: tuple[InputRef, ...]
    outputs_topic: str  # the step's own results
    final_topic: str | None  # the pipeline's outputs topic, for a sole output step
    errors_topic: str
    replies_topic: str  # where error replies go so a waiting caller hears at once
    batch: BatchConfig
    retry: RetryPolicy
    timeout_s: float | None
    join: str | None  # None: a single source, no join state
    partitions: int = 1  # of every topic of the pipeline
    join_window_ms: float = 10_000.0
    changelog_topic: str | None = None
    assembler: bool = False  # the pipeline-output join: no model, writes the final reply
    max_record_bytes: int = MESSAGE_MAX_BYTES  # the largest record the step may write
    _selections: dict[str, list[tuple[str | None, dict[str, str]]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def reply_partition(self, headers: list[tuple[str, bytes]]) -> int | None:
        """The outputs partition a gateway waits on (``streamdag-reply-to``), if any."""
        raw = next((v for k, v in reversed(headers) if k == "streamdag-reply-to"), None)
        if raw is None or not raw.isdigit() or int(raw) >= self.partitions:
            return None
        return int(raw)

    def is_request_topic(self, topic: str) -> bool:
        return self.source_topics.get(topic) == PIPELINE_SOURCE

    def select(self, source: str, arrays: Arrays) -> Arrays:
        """The model inputs this step takes from one source's tensors, renamed by
        ``tensor_map``. Raises InvalidInput naming a missing tensor."""
        picked: Arrays = {}
        for tensor, renames in self._selection(source):
            if tensor is None:
                names = list(arrays)
            elif tensor in arrays:
                names = [tensor]
            else:
                kind = "inputs" if source == PIPELINE_SOURCE else "outputs"
                raise InvalidInput(
                    f"step {self.step}: input {source}.{kind}.{tensor} is missing: "
                    f"{source}.{kind} has {', '.join(arrays) or 'no tensors'}"
                )
            for name in names:
                picked[renames.get(name, name)] = arrays[name]
        return picked

    def _selection(self, source: str) -> list[tuple[str | None, dict[str, str]]]:
        """Per reference to ``source``: its tensor (None: all) and the renames that
        ``tensor_map`` gives that source's tensors. Worked out once per source."""
        cache = self._selections
        found = cache.get(source)
        if found is None:
            kind = "inputs" if source == PIPELINE_SOURCE else "outputs"
            prefix = f"{source}.{kind}."
            renames = {
                key[len(prefix) :]: value
                for key, value in self.tensor_map.items()
                if key.startswith(prefix)
            }
            found = [(ref.tensor, renames) for ref in self.refs if ref.source == source]
            cache[source] = found
        return found


def plan_step(spec: PipelineSpec, step_name: str) -> StepPlan:
    graph = build_graph(spec)
    node = graph.nodes[step_name]
    step = node.spec
    model = spec.models[step.model]
    retry = step.retry or spec.retry
    outputs = spec.output_steps
    sole_output = outputs == [step_name]
    return StepPlan(
        pipeline=spec.name,
        version=str(spec.version),
        guarantee=spec.guarantee,
        step=step_name,
        model=step.model,
        group_id=consumer_group(spec.name, step_name),
        source_topics={source_topic(spec.name, s): s for s in node.sources},
        refs=tuple(step.input_refs),
        tensor_map=dict(step.tensor_map),
        triggers=tuple(step.trigger_refs),
        outputs_topic=step_outputs_topic(spec.name, step_name),
        final_topic=outputs_topic(spec.name) if sole_output else None,
        errors_topic=errors_topic(spec.name),
        replies_topic=outputs_topic(spec.name),
        batch=model.batch,
        retry=RetryPolicy(retry.max_attempts, retry.backoff_ms, retry.max_backoff_ms),
        timeout_s=model.timeout_ms / 1000.0 if model.timeout_ms else None,
        join=node.join_mode if node.is_join else None,
        partitions=spec.partitions,
        join_window_ms=float(step.join_window_ms),
        changelog_topic=join_state_topic(spec.name, step_name) if node.is_join else None,
    )


def plan_output(spec: PipelineSpec) -> StepPlan | None:
    """The output assembler of a pipeline with several output steps (else None): a join of
    their results into one final response on the pipeline's outputs topic."""
    steps = spec.output_steps
    if len(steps) < 2:
        return None
    return StepPlan(
        pipeline=spec.name,
        version=str(spec.version),
        guarantee=spec.guarantee,
        step=OUTPUT_JOIN,
        model="",
        group_id=consumer_group(spec.name, OUTPUT_JOIN),
        source_topics={step_outputs_topic(spec.name, s): s for s in steps},
        refs=tuple(InputRef(source=s) for s in steps),
        tensor_map={},
        triggers=(),
        outputs_topic=outputs_topic(spec.name),
        final_topic=None,
        errors_topic=errors_topic(spec.name),
        replies_topic=outputs_topic(spec.name),
        batch=BatchConfig(),
        retry=RetryPolicy(max_attempts=1),
        timeout_s=None,
        join=spec.output.join,
        partitions=spec.partitions,
        join_window_ms=float(spec.output.join_window_ms),
        changelog_topic=join_state_topic(spec.name, OUTPUT_JOIN),
        assembler=True,
    )
