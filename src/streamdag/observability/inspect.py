"""Find one request on every topic of a pipeline, or show the last records of a topic.

``trace_request`` is fast on large topics because every record of a pipeline is keyed by
its request id and every streamdag producer partitions keys with murmur2: the request can
only be on partition ``partition_for(id)`` of each topic, so only that partition is read,
from the first record at or after ``since`` to the end captured at the start, all topics
at once (see ``scan.py`` for what a bounded read_committed read means).

One exception: a final reply for a gateway request goes to the outputs partition the
gateway waits on (header ``streamdag-reply-to``), not to the key's. So the key's partition
of the outputs topic is read first; the partitions named by ``streamdag-reply-to`` on the
request's records are read next, and when neither says where the reply went, every other
outputs partition, from the time the request entered the pipeline on. Likewise for the
inputs topic, which clients write: one whose producer does not hash keys with murmur2
(librdkafka's default is ``consistent_random``) puts the request on another partition; when
the records of a pass through the pipeline are there but its request is not (none has the
``streamdag-request-ts`` they carry), the other inputs partitions are read, from the time
the request entered the pipeline on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamdag.errors import ConfigError, NotFound
from streamdag.kafka import KafkaConnection
from streamdag.kafka import headers as h
from streamdag.kafka.partitioner import partition_for
from streamdag.observability.records import RecordView, Role, entered_ms, view_record
from streamdag.observability.scan import Record, TopicReader, Window, format_time
from streamdag.payloads import PayloadStore
from streamdag.pipeline import PipelinePlan, topics_glob

__all__ = [
    "DEFAULT_SINCE_MS",
    "Hop",
    "PipelineTopic",
    "Trace",
    "last_records",
    "pipeline_topics",
    "trace_request",
]

DEFAULT_SINCE_MS = 24 * 3_600_000
# Records of one request written by different hosts: allow for their clocks to differ.
_CLOCK_SLACK_MS = 5_000
_TOPIC_CHOICES = ("inputs", "outputs", "errors")


@dataclass(frozen=True)
class PipelineTopic:
    role: Role
    step: str | None
    topic: str


@dataclass(frozen=True)
class Hop:
    """A record of the request, and the time since the previous one (None for the first)."""

    record: RecordView
    since_previous_ms: int | None

    def to_dict(self, *, values: bool = False) -> dict[str, Any]:
        return {**self.record.to_dict(values=values), "since_previous_ms": self.since_previous_ms}


@dataclass(frozen=True)
class Trace:
    """Every record of one request on the pipeline's topics, in order of time."""

    pipeline: str
    request_id: str
    partition: int
    since_ms: int
    hops: tuple[Hop, ...]

    @property
    def elapsed_ms(self) -> int:
        """From the first record to the last."""
        if not self.hops:
            return 0
        return self.hops[-1].record.timestamp_ms - self.hops[0].record.timestamp_ms

    def to_dict(self, *, values: bool = False) -> dict[str, Any]:
        """The trace as JSON; tensors' first values only with ``values``."""
        return {
            "pipeline": self.pipeline,
            "request_id": self.request_id,
            "partition": self.partition,
            "since": format_time(self.since_ms),
            "elapsed_ms": self.elapsed_ms,
            "hops": [hop.to_dict(values=values) for hop in self.hops],
        }


def pipeline_topics(plan: PipelinePlan) -> list[PipelineTopic]:
    """The topics a request crosses, in DAG order: inputs, each step's outputs, errors,
    outputs. Join-state topics are left out. A step that answers alone has the outputs
    topic for its own (its records there are named by ``streamdag-step``)."""
    return [
        PipelineTopic("inputs", None, plan.inputs_topic),
        *(PipelineTopic("step", n.name, n.outputs_topic) for n in plan.steps),
        PipelineTopic("errors", None, plan.errors_topic),
        PipelineTopic("outputs", None, plan.outputs_topic),
    ]


def trace_request(
    plan: PipelinePlan,
    kafka: KafkaConnection | str,
    request_id: str,
    *,
    since_ms: int | None = None,
    timeout: float = 60.0,
    payloads: PayloadStore | None = None,
) -> Trace:
    """Every record of ``request_id`` since ``since_ms`` (ms since the epoch; default 24 h
    ago) on the pipeline's topics. Raises ``NotFound`` if there is none, ``KafkaOperationError`` if
    Kafka cannot be reached."""
    since = int(time.time() * 1000) - DEFAULT_SINCE_MS if since_ms is None else since_ms
    key = request_id.encode()
    partition = partition_for(key, plan.partitions)
    with TopicReader(kafka) as reader:
        existing = reader.topics()
        # Each topic once: a step that answers alone shares the outputs topic.
        topics = [
            t
            for t in pipeline_topics(plan)
            if t.topic in existing and not (t.role == "step" and t.topic == plan.outputs_topic)
        ]
        if not topics:
            raise NotFound(f"pipeline {plan.name} has no topics on {reader.kafka}: has it run?")
        replies, requests = plan.outputs_topic, plan.inputs_topic
        counts = {t: existing.get(t, 0) for t in (replies, requests)}
        others = [(t, p) for t, n in counts.items() for p in range(n) if p != partition]
        ends = reader.ends([*((t.topic, partition) for t in topics), *others])
        first = reader.windows_since([(t.topic, partition) for t in topics], since, ends)
        found = reader.read(first, keys={key}, timeout=timeout)
        more = [(replies, p) for p in _reply_partitions(found, replies, partition, counts[replies])]
        if _requests_missing(found, requests):
            more += [(requests, p) for p in range(counts[requests]) if p != partition]
        if more:
            bound = min(entered_ms(r) for r in found) - _CLOCK_SLACK_MS
            windows = reader.windows_since(more, max(since, bound), ends)
            found += reader.read(windows, keys={key}, timeout=timeout)
    if not found:
        raise NotFound(
            f"request {request_id} not found in {topics_glob(plan.name)} (partition "
            f"{partition}) since {format_time(since)}"
        )
    hops = _hops(found, topics, plan.inputs_topic, payloads)
    return Trace(plan.name, request_id, partition, since, hops)


def _reply_partitions(
    found: Sequence[Record], replies: str, key_partition: int, partitions: int
) -> list[int]:
    """The outputs partitions to read besides the key's: those named as reply partition,
    or all of them when the key's partition holds no reply and none is named. Nothing when
    the request left no record at all: its reply cannot be anywhere else then."""
    if not found:
        return []
    named: set[int] = set()
    for record in found:
        value = h.get_header(record.headers, h.REPLY_TO) or ""
        if value.isdigit() and int(value) < partitions:
            named.add(int(value))
    named.discard(key_partition)
    if named:
        return sorted(named)
    if any(r.topic == replies for r in found):
        return []
    return [p for p in range(partitions) if p != key_partition]


def _requests_missing(found: Sequence[Record], requests: str) -> bool:
    """Whether the request of some pass through the pipeline is not among ``found``: each
    step stamps when the request entered (``streamdag-request-ts``), which is the request
    record's own stamp or timestamp."""
    entered = {entered_ms(r) for r in found if r.topic == requests}
    return any(
        r.topic != requests
        and h.get_header(r.headers, h.REQUEST_TS)
        and entered_ms(r) not in entered
        for r in found
    )


def _hops(
    found: list[Record],
    topics: list[PipelineTopic],
    inputs: str,
    payloads: PayloadStore | None = None,
) -> tuple[Hop, ...]:
    rank = {t.topic: i for i, t in enumerate(topics)}
    by_topic = {t.topic: t for t in topics}
    # Records written in the same millisecond keep the DAG order.
    ordered = sorted(found, key=lambda r: (r.timestamp_ms, rank[r.topic], r.offset))
    hops: list[Hop] = []
    previous: int | None = None
    for record in ordered:
        topic = by_topic[record.topic]
        view = view_record(
            record, topic.role, step=topic.step, inputs_topic=inputs, payloads=payloads
        )
        delta = None if previous is None else record.timestamp_ms - previous
        hops.append(Hop(view, delta))
        previous = record.timestamp_ms
    return tuple(hops)


def last_records(
    plan: PipelinePlan,
    kafka: KafkaConnection | str,
    count: int,
    *,
    source: str = "outputs",
    since_ms: int | None = None,
    timeout: float = 60.0,
    payloads: PayloadStore | None = None,
) -> list[RecordView]:
    """The last ``count`` records (oldest first) of a topic of the pipeline, over all its
    partitions: ``source`` is ``inputs``, ``outputs``, ``errors`` or a step name (that
    step's outputs). ``since_ms`` bounds how far back to look. Raises ``ConfigError`` for
    an unknown step, ``NotFound`` when the topic does not exist."""
    if count < 1:
        raise ConfigError(f"the number of records must be at least 1, not {count}")
    target = _resolve(plan, source)
    with TopicReader(kafka) as reader:
        partitions = reader.topics().get(target.topic)
        if partitions is None:
            raise NotFound(
                f"topic {target.topic} does not exist on {reader.kafka}: has the pipeline run?"
            )
        tps = [(target.topic, p) for p in range(partitions)]
        ends = reader.ends(tps)
        lows = reader.beginnings(tps)
        if since_ms is not None:
            starts = reader.offsets_at(tps, since_ms)
            lows = {tp: (ends[tp] if starts[tp] < 0 else max(lows[tp], starts[tp])) for tp in tps}
        records = _read_back(reader, ends, lows, count, timeout)
    records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return [
        view_record(
            r, target.role, step=target.step, inputs_topic=plan.inputs_topic, payloads=payloads
        )
        for r in records[-count:]
    ]


def _read_back(
    reader: TopicReader,
    ends: dict[tuple[str, int], int],
    lows: dict[tuple[str, int], int],
    count: int,
    timeout: float,
) -> list[Record]:
    """At least ``count`` records from the end of each partition, where it has that many.
    Transaction markers take offsets too, so a partition that gave fewer than ``count``
    records is read further back, twice as far each time."""
    records: list[Record] = []
    got = dict.fromkeys(ends, 0)
    upto = dict(ends)
    span = count
    while True:
        windows = [
            Window(t, p, max(lows[(t, p)], upto[(t, p)] - span), upto[(t, p)])
            for (t, p) in ends
            if got[(t, p)] < count and upto[(t, p)] > lows[(t, p)]
        ]
        if not windows:
            return records
        for record in reader.read(windows, timeout=timeout):
            records.append(record)
            got[(record.topic, record.partition)] += 1
        for w in windows:
            upto[(w.topic, w.partition)] = w.start
        span *= 2


def _resolve(plan: PipelinePlan, source: str) -> PipelineTopic:
    topics = pipeline_topics(plan)
    for t in topics:
        if (t.role == "step" and t.step == source) or (t.role != "step" and t.role == source):
            return t
    steps = ", ".join(t.step for t in topics if t.step)
    raise ConfigError(
        f"unknown step {source!r}: pipeline {plan.name} has steps {steps} "
        f"(and topics {', '.join(_TOPIC_CHOICES)})"
    )
