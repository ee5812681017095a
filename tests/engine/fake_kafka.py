"""An in-memory stand-in for the confluent-kafka producer and consumer calls the engine's
delivery makes, with failures scripted per call: enough to pin down how ``Delivery``
handles each class of Kafka error, in milliseconds. The broker tests prove the wiring.

``FakeCluster`` is what the broker would hold once a transaction commits: the records
and the group's offsets. Producers share it, so a new producer that replaces a failed one
writes to the same place, and ``init_transactions`` fences every earlier producer.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

__all__ = [
    "HANG",
    "FakeCluster",
    "FakeConsumer",
    "FakeProducer",
    "abortable",
    "fatal",
    "retriable",
]


def retriable(reason: str = "request timed out") -> KafkaException:
    return KafkaException(KafkaError(KafkaError._TIMED_OUT, reason, retriable=True))


def abortable(reason: str = "transaction must be aborted") -> KafkaException:
    return KafkaException(KafkaError(KafkaError._STATE, reason, txn_requires_abort=True))


def fatal(reason: str = "producer fenced") -> KafkaException:
    return KafkaException(KafkaError(KafkaError._FENCED, reason, fatal=True))


class _Hang:
    """A scripted call that blocks until the cluster is released (a hung librdkafka call)."""


HANG = _Hang()
Fault = BaseException | _Hang


@dataclass
class FakeCluster:
    records: list[tuple[str, bytes, bytes]] = field(default_factory=list)  # topic, key, value
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # committed, per partition
    faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    calls: list[str] = field(default_factory=list)
    producers: list[FakeProducer] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def fail(self, call: str, *faults: Fault) -> None:
        """The next ``len(faults)`` calls named ``call`` (by any producer or consumer)
        raise these, in order; later calls succeed."""
        self.faults[call].extend(faults)

    def hit(self, call: str) -> None:
        self.calls.append(call)
        queue = self.faults.get(call)
        if not queue:
            return
        fault = queue.popleft()
        if isinstance(fault, _Hang):
            self.released.wait(30)
            return
        raise fault

    def producer(self, config: dict[str, Any]) -> FakeProducer:
        """The ``producer_factory`` a delivery is given."""
        producer = FakeProducer(self, config)
        self.producers.append(producer)
        return producer


class FakeProducer:
    def __init__(self, cluster: FakeCluster, config: dict[str, Any]) -> None:
        self.cluster = cluster
        self.config = config
        self.fenced = False
        self.unsent = 0  # what the next flush reports as not delivered
        self.failed_reports: list[KafkaError] = []  # delivered to on_delivery at the next flush
        self._pending: list[tuple[str, bytes, bytes]] = []
        self._pending_offsets: list[TopicPartition] = []
        self._in_transaction = False

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> None:
        self.cluster.hit("list_topics")

    # transactions
    def init_transactions(self, timeout: float = -1) -> None:
        self.cluster.hit("init_transactions")
        for other in self.cluster.producers:
            if other is not self:
                other.fenced = True
                other._abandon()

    def begin_transaction(self) -> None:
        self.cluster.hit("begin_transaction")
        self._check_fenced()
        if self._in_transaction:
            raise KafkaException(KafkaError(KafkaError._STATE, "transaction already begun"))
        self._in_transaction = True

    def send_offsets_to_transaction(
        self, offsets: Sequence[TopicPartition], metadata: object, timeout: float = -1
    ) -> None:
        self.cluster.hit("send_offsets_to_transaction")
        self._check_fenced()
        self._pending_offsets = list(offsets)

    def commit_transaction(self, timeout: float = -1) -> None:
        self.cluster.hit("commit_transaction")
        self._check_fenced()
        self.cluster.records.extend(self._pending)
        for tp in self._pending_offsets:
            self.cluster.offsets[(tp.topic, tp.partition)] = tp.offset
        self._abandon()

    def abort_transaction(self, timeout: float = -1) -> None:
        self.cluster.hit("abort_transaction")
        self._abandon()

    # records
    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        **kwargs: Any,
    ) -> None:
        self.cluster.hit("produce")
        self._check_fenced()
        record = (topic, key or b"", value or b"")
        if self._in_transaction:
            self._pending.append(record)
        else:  # idempotent, no transaction: on the broker once acknowledged
            self.cluster.records.append(record)

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = -1) -> int:
        self.cluster.hit("flush")
        on_delivery = self.config.get("on_delivery")
        for error in self.failed_reports:
            if on_delivery is not None:
                on_delivery(error, None)
        self.failed_reports = []
        unsent, self.unsent = self.unsent, 0
        return unsent

    def __len__(self) -> int:
        return 0

    def _check_fenced(self) -> None:
        if self.fenced:
            raise fatal("a newer producer with this transactional id took over")

    def _abandon(self) -> None:
        self._pending = []
        self._pending_offsets = []
        self._in_transaction = False


class FakeConsumer:
    """Its position per partition, moved by ``seek``; commits go to the cluster."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.positions: dict[tuple[str, int], int] = {}
        self.seeks: list[tuple[str, int, int]] = []
        self.assigned: list[tuple[str, int]] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.assigned]

    def consumer_group_metadata(self) -> object:
        return object()

    def committed(
        self, partitions: Sequence[TopicPartition], timeout: float = -1
    ) -> list[TopicPartition]:
        self.cluster.hit("committed")
        return [
            TopicPartition(
                tp.topic, tp.partition, self.cluster.offsets.get((tp.topic, tp.partition), -1001)
            )
            for tp in partitions
        ]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))
        self.positions[(tp.topic, tp.partition)] = tp.offset

    def commit(self, offsets: Sequence[TopicPartition], asynchronous: bool = True) -> None:
        self.cluster.hit("commit")
        for tp in offsets:
            self.cluster.offsets[(tp.topic, tp.partition)] = tp.offset


@dataclass
class FakeMessage:
    """The parts of a consumed confluent-kafka Message that a step reads; the defaults are
    any record of an inputs topic, with a create-time timestamp."""

    value_: bytes | None
    key_: bytes | None = None
    headers_: list[tuple[str, bytes | None]] | None = None
    topic_: str = "streamdag.triage.inputs"
    partition_: int = 4
    offset_: int = 1234
    timestamp_: tuple[int, int] = (1, 1_700_000_000_123)  # TIMESTAMP_CREATE_TIME, ms

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self.headers_

    def timestamp(self) -> tuple[int, int]:
        return self.timestamp_
