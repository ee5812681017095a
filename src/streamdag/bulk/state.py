"""A job's progress, kept in Kafka: the compacted topic ``streamdag.<p>.jobs``.

One record per checkpoint, keyed by the job's name, written by the submitter in the same
transaction as the input records it sent since the previous one. So the topic's last
committed record of a job says exactly which rows reached the pipeline (``read``: the
rows taken from the source, sent or refused), which of them still wait for an answer
(``pending``), where the job had read the outputs topic (``offsets``) and how much of its
files held the answers handled by then (``files``). A resumed job, on any machine that
has the files, starts from there. Compaction keeps the last record of every job.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from streamdag.kafka import KafkaConnection, TopicSpec, consumer_config, ensure_topics
from streamdag.observability.scan import TopicReader, Window

_READ_TIMEOUT_S = 10.0

__all__ = ["JobBook", "JobState", "jobs_topic", "read_jobs"]


def jobs_topic(pipeline: str) -> str:
    return f"streamdag.{pipeline}.jobs"


def jobs_topic_spec(pipeline: str) -> TopicSpec:
    # One partition: a job's records must stay in order, and jobs are few.
    return TopicSpec(jobs_topic(pipeline), 1, compacted=True)


@dataclass
class JobState:
    job: str
    pipeline: str
    token: str  # in every call token of the job's requests: bulk-<token>-<row>
    source: str = ""
    total: int | None = None  # rows in the source, when known
    read: int = 0  # rows taken from the source: sent, or refused before sending
    results: int = 0
    failures: int = 0
    pending: list[int] = field(default_factory=list)  # rows sent, not yet answered
    offsets: dict[str, int] = field(default_factory=dict)  # outputs partition -> next offset
    files: dict[str, int] = field(default_factory=dict)  # file -> bytes held at checkpoint
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    done: bool = False

    @property
    def sent(self) -> int:
        return self.results + self.failures + len(self.pending)

    def counts(self) -> dict[str, Any]:
        """What ``streamdag jobs`` and the web view show of the job."""
        return {
            "job": self.job,
            "state": "done" if self.done else "open",
            "rows": self.read,
            "total": self.total,
            "results": self.results,
            "failed": self.failures,
            "in_flight": len(self.pending),
            "updated": self.updated,
        }

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> JobState:
        data: dict[str, Any] = orjson.loads(raw)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def read_jobs(kafka: KafkaConnection, pipeline: str, timeout: float = 30.0) -> dict[str, JobState]:
    """The last committed state of every job of ``pipeline``, by name."""
    ensure_topics(kafka, [jobs_topic_spec(pipeline)])
    eof: dict[str, Any] = {"enable.partition.eof": True}
    consumer = Consumer(consumer_config(kafka, "streamdag-jobs-reader", **eof))
    found: dict[str, JobState] = {}
    try:
        consumer.assign([TopicPartition(jobs_topic(pipeline), 0, 0)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:  # read_committed's end
                    break
                continue
            _apply(found, msg.key(), msg.value())
    finally:
        consumer.close()
    return found


def _apply(found: dict[str, JobState], key: bytes | None, value: bytes | None) -> None:
    """One record of the jobs topic: a job's newer state, or its deletion (no value)."""
    name = (key or b"").decode(errors="replace")
    if not value:
        found.pop(name, None)
    else:
        found[name] = JobState.decode(value)


class JobBook:
    """Every job of a pipeline at its last committed checkpoint, kept between reads.

    For a reader that looks again and again (the web view): each ``update`` reads only
    the jobs topic's records since the previous one, as a running job checkpoints five
    times a second and its records stay until compaction. Not thread-safe: one update at
    a time."""

    def __init__(self, pipeline: str) -> None:
        self.topic = jobs_topic(pipeline)
        self.jobs: dict[str, JobState] = {}
        self._next = 0  # the next offset to read

    def update(self, reader: TopicReader) -> dict[str, JobState]:
        """Read what is new (``read_committed``, to the end seen now); the jobs, by name.
        A pipeline that never ran a job has none (the topic is not made here)."""
        if self.topic not in reader.topics():
            return self.jobs
        tp = (self.topic, 0)
        end, start = reader.ends([tp])[tp], reader.beginnings([tp])[tp]
        if end < self._next:  # the topic was made again: all of it
            self.jobs, self._next = {}, 0
        window = Window(self.topic, 0, max(self._next, start), end)
        for record in reader.read([window], timeout=_READ_TIMEOUT_S):
            _apply(self.jobs, record.key, record.value)
        self._next = end
        return self.jobs
