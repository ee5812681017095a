"""The baseline: a raw confluent-kafka consume -> produce loop with a delivery guarantee,
configured as the engine's clients are, copying bytes without looking at them."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any

from _drain import BenchmarkFailed
from confluent_kafka import Consumer, Producer, TopicPartition

from streamdag.kafka import consumer_config, producer_config

__all__ = ["RawLoop", "produce"]

# The group settings StepWorker gives its consumer (engine/worker.py), so that the
# baseline joins and heartbeats the same way.
WORKER_CONSUMER = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1500,
    "max.poll.interval.ms": 300_000,
}
# As TransactionalDelivery (engine/delivery.py).
TRANSACTION_TIMEOUT_MS = 10_000
CALL_TIMEOUT_S = 30.0


def _next_offsets(messages: Sequence[Any]) -> list[TopicPartition]:
    nxt: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic(), m.partition())
        nxt[key] = max(nxt.get(key, 0), m.offset() + 1)
    return [TopicPartition(t, p, o) for (t, p), o in nxt.items()]


def produce(producer: Producer, topic: str, key: bytes | None, value: bytes | None) -> None:
    """Produce one record, serving deliveries while the local queue is full."""
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.05)


class RawLoop:
    """The baseline: consume a batch, copy its bytes to ``sink``, commit, with the guarantee.

    exactly_once: begin_transaction, produce, send_offsets_to_transaction,
    commit_transaction. at_least_once: produce (idempotent), flush, synchronous commit.
    """

    def __init__(
        self,
        bootstrap: str,
        source: str,
        sink: str,
        guarantee: str,
        batch: int,
        wait_ms: float,
        producer_extra: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.source = source
        self.sink = sink
        self.guarantee = guarantee
        self.batch = batch
        self.wait_s = wait_ms / 1000
        self.group = f"bench-raw-{uuid.uuid4().hex[:8]}"
        self.producer_extra = producer_extra or {}
        self.stop_event = threading.Event()

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        consumer = Consumer(
            consumer_config(self.bootstrap, self.group, client_id=self.group, **WORKER_CONSUMER)
        )
        transactional = self.guarantee == "exactly_once"
        if transactional:
            producer = Producer(
                producer_config(
                    self.bootstrap,
                    transactional_id=self.group,
                    client_id=self.group,
                    **{"transaction.timeout.ms": TRANSACTION_TIMEOUT_MS, **self.producer_extra},
                )
            )
            producer.init_transactions(CALL_TIMEOUT_S)
        else:
            producer = Producer(
                producer_config(self.bootstrap, client_id=self.group, **self.producer_extra)
            )
        consumer.subscribe([self.source])
        try:
            while not self.stop_event.is_set():
                messages = [
                    m for m in consumer.consume(self.batch, self.wait_s) if m.error() is None
                ]
                if not messages:
                    continue
                offsets = _next_offsets(messages)
                if transactional:
                    producer.begin_transaction()
                    for m in messages:
                        produce(producer, self.sink, m.key(), m.value())
                    producer.send_offsets_to_transaction(
                        offsets, consumer.consumer_group_metadata(), CALL_TIMEOUT_S
                    )
                    producer.commit_transaction(CALL_TIMEOUT_S)
                else:
                    for m in messages:
                        produce(producer, self.sink, m.key(), m.value())
                    if producer.flush(CALL_TIMEOUT_S):
                        raise BenchmarkFailed("baseline: records left unsent")
                    consumer.commit(offsets=offsets, asynchronous=False)
        finally:
            producer.flush(CALL_TIMEOUT_S)
            consumer.close()
