"""What one node of a pipeline does, read from its compiled plan: topics in and out,
tensor selection, batching and retry policy. Pure; the worker executes it."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamdag.engine.batching import RetryPolicy
from streamdag.errors import InvalidInput
from streamdag.kafka import MESSAGE_MAX_BYTES
from streamdag.pipeline import JoinMode, NodeKind, PipelinePlan
from streamdag.pipeline.spec import PIPELINE_SOURCE, InputRef
from streamdag.protocol.datatypes import Arrays
from streamdag.runtimes.config import BatchConfig

__all__ = ["StepPlan", "step_plan"]


@dataclass(frozen=True)
class StepPlan:
    pipeline: str
    version: str
    guarantee: str
    step: str
    kind: NodeKind
    model: str  # empty for the assembler
    group_id: str
    source_topics: dict[str, str]  # topic -> source ("pipeline" or a step name)
    refs: tuple[InputRef, ...]
    tensor_map: dict[str, str]
    triggers: tuple[InputRef, ...]
    outputs_topic: str  # its results: the step's own topic, the pipeline's for the assembler
    final_topic: str | None  # the pipeline's outputs topic, if this node answers the caller
    errors_topic: str
    replies_topic: str  # where error replies go so a waiting caller hears at once
    batch: BatchConfig
    retry: RetryPolicy
    timeout_s: float | None
    join: JoinMode | None  # None: a single source, no join state
    partitions: int = 1  # of every topic of the pipeline
    join_window_ms: float = 10_000.0
    changelog_topic: str | None = None
    max_record_bytes: int = MESSAGE_MAX_BYTES  # the largest record the step may write
    _selections: dict[str, list[tuple[str | None, dict[str, str]]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def reply_partition(self, headers: list[tuple[str, bytes]]) -> int | None:
        """The outputs partition a gateway waits on (``streamdag-reply-to``), if any."""
        raw = None
        for k, v in headers:
            if k == "streamdag-reply-to":
                raw = v  # the last one counts
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


def step_plan(
    plan: PipelinePlan, node: str, *, max_record_bytes: int = MESSAGE_MAX_BYTES
) -> StepPlan:
    """What the worker of ``node`` (a step, or the output assembler) runs."""
    n = plan.node(node)
    retry = n.retry
    return StepPlan(
        pipeline=plan.name,
        version=plan.version,
        guarantee=plan.guarantee,
        step=n.name,
        kind=n.kind,
        model=n.model or "",
        group_id=n.group,
        source_topics=dict(n.source_topics),
        refs=n.refs,
        tensor_map=dict(n.tensor_map),
        triggers=n.triggers,
        outputs_topic=n.outputs_topic,
        final_topic=n.final_topic,
        errors_topic=plan.errors_topic,
        replies_topic=plan.outputs_topic,
        batch=n.batch,
        retry=RetryPolicy(retry.max_attempts, retry.backoff_ms, retry.max_backoff_ms),
        timeout_s=n.timeout_ms / 1000.0 if n.timeout_ms else None,
        join=n.join,
        partitions=plan.partitions,
        join_window_ms=float(n.join_window_ms),
        changelog_topic=n.changelog_topic,
        max_record_bytes=max_record_bytes,
    )
