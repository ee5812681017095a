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

__all__ = ["JobState", "jobs_topic", "read_jobs"]


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
            key = (msg.key() or b"").decode()
            value = msg.value()
            if value is None:
                found.pop(key, None)
            else:
                found[key] = JobState.decode(value)
    finally:
        consumer.close()
    return found
