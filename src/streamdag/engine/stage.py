"""What a worker runs: a stage of one or more steps, and what it makes of a fetched batch.

A stage of one step is that step's own worker. A fused stage runs several steps of a
pipeline in one worker, one consumer group and one transaction per commit (Kafka
Streams' sub-topology, Flink's operator chain). Its consumer reads the topics its steps
read that none of them writes; each step then runs, in topological order, on what it
read and on what the steps before it wrote for it in this batch, handed on in memory.
Every record each step writes is still produced, to the same topics as unfused, in the
batch's transaction with the stage's input offsets:

    fetched batch ─▶ step 1 ─▶ its records ─────────────────────────────┐
                              └─ on a topic step 2 reads ─▶ step 2 ─▶ its records ─┤
                                                                    one transaction ◀┘

A hand-off is never committed apart from the batch it came from: a rollback or a crash
redoes the batch from the stage's committed input offsets, and with it every hand-off.
A handed record has no offset yet (it is produced in the same transaction), so a failure
it causes names offset -1 in ``streamdag-source-offset``. Its partition is the one Kafka
gives its key (murmur2, as every streamdag producer partitions), so a join inside the
stage keeps its pieces where an unfused worker would.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Span

from streamdag.engine.envelope import OutRecord, decode_records
from streamdag.engine.joins import JoinState
from streamdag.engine.logic import Predict, StepLogic
from streamdag.engine.plan import StepPlan, step_plan
from streamdag.kafka import MESSAGE_MAX_BYTES
from streamdag.kafka.partitioner import partition_for
from streamdag.observability import metrics
from streamdag.payloads import PayloadStore
from streamdag.pipeline import PipelinePlan, PlanStage
from streamdag.pipeline.spec import PIPELINE_SOURCE
from streamdag.runtimes.config import BatchConfig

__all__ = ["Processed", "StageLogic", "StagePlan", "stage_plan"]


@dataclass(frozen=True)
class StagePlan:
    """The steps one worker runs, with the consumer group and topics it reads."""

    pipeline: str
    name: str  # the step's, or the fused steps' names joined by "+"
    group_id: str
    guarantee: str
    steps: tuple[StepPlan, ...]  # topological
    source_topics: dict[str, str]  # what its consumer reads: topic -> source
    internal_topics: frozenset[str]  # written by one of its steps, read by another
    batch: BatchConfig  # of a fetch
    partitions: int

    @property
    def has_join(self) -> bool:
        return any(s.join is not None for s in self.steps)

    def is_request_topic(self, topic: str) -> bool:
        return self.source_topics.get(topic) == PIPELINE_SOURCE

    @classmethod
    def of(cls, step: StepPlan) -> StagePlan:
        """The stage of one step: its own group, topics and batching."""
        return cls(
            pipeline=step.pipeline,
            name=step.step,
            group_id=step.group_id,
            guarantee=step.guarantee,
            steps=(step,),
            source_topics=dict(step.source_topics),
            internal_topics=frozenset(),
            batch=step.batch,
            partitions=step.partitions,
        )


def stage_plan(
    plan: PipelinePlan, stage: PlanStage, *, max_record_bytes: int = MESSAGE_MAX_BYTES
) -> StagePlan:
    """What the worker of ``stage`` runs."""
    steps = tuple(step_plan(plan, n, max_record_bytes=max_record_bytes) for n in stage.nodes)
    if len(steps) == 1:
        return StagePlan.of(steps[0])
    # A fetch takes as much as its largest entry step would, and waits no longer for more
    # than the most impatient one; each step still runs at most its own max_size at once.
    entry = [s for s in steps if set(s.source_topics) & set(stage.source_topics)]
    return StagePlan(
        pipeline=plan.name,
        name=stage.name,
        group_id=stage.group,
        guarantee=plan.guarantee,
        steps=steps,
        source_topics=dict(stage.source_topics),
        internal_topics=stage.internal_topics,
        batch=BatchConfig(
            max_size=max(s.batch.max_size for s in entry),
            max_wait_ms=min(s.batch.max_wait_ms for s in entry),
        ),
        partitions=plan.partitions,
    )


@dataclass
class Processed:
    """What a batch made: the records to produce, the step spans to end once they are
    delivered, and per step (its metric labels) how many records it wrote to its own
    outputs topic, to count once committed."""

    records: list[OutRecord]
    spans: list[Span]
    written: list[tuple[tuple[str, str], int]]


class _Handed:
    """A record one step of a stage wrote, handed to another step as the consumer would
    hand it over once committed: the interface of a confluent-kafka message that
    ``decode_records`` reads."""

    __slots__ = ("_partition", "_record", "_ts")

    def __init__(self, record: OutRecord, partition: int, ts_ms: int) -> None:
        self._record = record
        self._partition = partition
        self._ts = ts_ms

    def topic(self) -> str:
        return self._record.topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return -1  # produced in the same transaction: no offset yet

    def key(self) -> bytes:
        return self._record.key.encode()

    def value(self) -> bytes | None:
        return self._record.value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._record.headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)  # TIMESTAMP_CREATE_TYPE

    def error(self) -> None:
        return None


class StageLogic:
    """Runs the steps of a stage on a fetched batch; owned by the thread that runs the
    models (the join states in it belong to that thread). No Kafka I/O here."""

    def __init__(
        self,
        plan: StagePlan,
        predicts: Mapping[str, Predict],
        payloads: PayloadStore | None = None,
    ) -> None:
        self.plan = plan
        self.payloads = payloads
        self.steps = [StepLogic(s, predicts[s.step], payloads) for s in plan.steps]
        # The steps that read each topic: from the consumer, or handed on in memory.
        self._readers: dict[str, list[str]] = {}
        for step in plan.steps:
            for topic in step.source_topics:
                self._readers.setdefault(topic, []).append(step.step)
        self._in = {s.step: metrics.RECORDS_IN.labels(s.pipeline, s.step) for s in plan.steps}

    @property
    def joins(self) -> list[tuple[str, JoinState]]:
        """The join state of each join step, by step name."""
        return [(s.plan.step, s.join) for s in self.steps if s.join is not None]

    def due(self, now_ms: float) -> bool:
        """Whether a join window has passed and ``process([])`` has work to do."""
        return any(s.due(now_ms) for s in self.steps)

    def process(self, messages: Sequence[Any], fetched_ns: int) -> Processed:
        """Run every step on what it reads of ``messages`` (confluent-kafka messages of
        the stage's source topics) and on what the steps before it wrote for it."""
        inbox: dict[str, list[Any]] = {s.step: [] for s in self.plan.steps}
        for message in messages:
            for step in self._readers.get(message.topic(), ()):
                inbox[step].append(message)
        internal = self.plan.internal_topics
        done = Processed([], [], [])
        handed_ns: int | None = None
        for logic in self.steps:
            plan = logic.plan
            todo = inbox[plan.step]
            if not todo and logic.join is None:
                continue  # a join step still runs: its windows may have passed
            self._in[plan.step].inc(len(todo))
            # Up to the step's own max_size at once, as its own consumer would fetch.
            size = plan.batch.max_size
            chunks = [todo[k : k + size] for k in range(0, len(todo), size)] or [[]]
            written = 0
            for chunk in chunks:
                envelopes = decode_records(
                    chunk,
                    plan.is_request_topic,
                    model_name=plan.pipeline,
                    payloads=self.payloads,
                )
                records = logic.process(envelopes, fetched_ns=handed_ns or fetched_ns)
                done.spans += logic.take_spans()
                done.records += records
                for record in records:
                    if record.topic == plan.outputs_topic:
                        written += 1
                    if record.topic in internal:
                        self._hand_on(record, inbox)
            if written:
                done.written.append((logic.labels, written))
            if internal:
                handed_ns = time.time_ns()
        return done

    def _hand_on(self, record: OutRecord, inbox: dict[str, list[Any]]) -> None:
        partition = record.partition
        if partition is None:
            partition = partition_for(record.key.encode(), self.plan.partitions)
        handed = _Handed(record, partition, int(time.time() * 1000))
        for step in self._readers[record.topic]:
            inbox[step].append(handed)
