"""The baseline: a raw confluent-kafka consume -> produce loop with a delivery guarantee,
configured as the engine's clients are, copying bytes without looking at them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from _drain import BenchmarkFailed
from _handlers import double
from confluent_kafka import Consumer, Producer, TopicPartition

from streamdag.kafka import consumer_config, producer_config
from streamdag.kafka.headers import (
    CALL,
    REQUEST_TS,
    STEP,
)
from streamdag.protocol import request_from_bytes
from streamdag.protocol.codec import decode_requests, response_bytes

__all__ = ["PythonFloor", "RawLoop", "produce"]

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


class PythonFloor(RawLoop):
    """What any Python engine must do per request, and nothing more: at_least_once only.

    Per batch: parse the requests, decode their tensors together (``decode_requests``),
    run the benchmark's model once, then per request serialize the response
    (``response_bytes``), stamp the headers a step writes (call, request time, step)
    and produce one record to the pipeline's outputs topic, as the engine does for a step
    that answers alone. Flush and commit every 100 ms, as the engine does. No
    envelopes, no error paths, no metrics, no second thread: the floor under the engine's
    own cost, measured by the same clock.
    """

    def __init__(self, *args: Any, final_sink: str, pipeline: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.final_sink = final_sink
        self.pipeline = pipeline
        self.failed: list[str] = []  # delivery errors, from librdkafka's callback

    def run(self) -> None:
        consumer = Consumer(
            consumer_config(self.bootstrap, self.group, client_id=self.group, **WORKER_CONSUMER)
        )
        report_errors: dict[str, Any] = {
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
        }
        producer = Producer(
            producer_config(
                self.bootstrap, client_id=self.group, **report_errors, **self.producer_extra
            )
        )
        consumer.subscribe([self.source])
        names = (self.pipeline,)
        named = [(STEP, b"s")]  # on the pipeline's outputs topic, as the engine writes
        pending: dict[tuple[str, int], int] = {}
        committed = time.monotonic()
        try:
            while not self.stop_event.is_set():
                messages = [
                    m for m in consumer.consume(self.batch, self.wait_s) if m.error() is None
                ]
                if messages:
                    arrays = decode_requests([request_from_bytes(m.value()) for m in messages])
                    x = np.concatenate([a["x"] for a in arrays if isinstance(a, dict)])
                    y = double({"x": x})["y"]
                    now = str(int(time.time() * 1000)).encode()
                    for i, m in enumerate(messages):
                        key = m.key()
                        rid = key.decode()
                        (value,) = response_bytes(
                            {"y": y[i : i + 1]}, id=rid, model_version="1", model_names=names
                        )
                        call = f"{m.partition()}-{m.offset()}".encode()
                        headers = [(CALL, call), (REQUEST_TS, now), *named]
                        producer.produce(self.final_sink, value, key, headers=headers)
                        pending[(m.topic(), m.partition())] = m.offset() + 1
                    producer.poll(0)
                if pending and time.monotonic() - committed >= 0.1:
                    if producer.flush(CALL_TIMEOUT_S) or self.failed:
                        raise BenchmarkFailed(f"python floor: delivery failed {self.failed[:1]}")
                    offsets = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
                    consumer.commit(offsets=offsets, asynchronous=False)
                    pending, committed = {}, time.monotonic()
        finally:
            producer.flush(CALL_TIMEOUT_S)
            consumer.close()

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed.append(err.str())
