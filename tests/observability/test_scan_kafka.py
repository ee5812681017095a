"""Bounded read_committed reads on the real broker: they end at the end captured at the
start, past transaction markers, without waiting for a transaction still open."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from streamdag.errors import KafkaOperationError
from streamdag.kafka import producer_config
from streamdag.observability.scan import TopicReader, Window


def test_read_stops_at_the_last_stable_offset(
    bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(1)
    producer = Producer(producer_config(bootstrap, transactional_id=f"scan-{uuid.uuid4().hex}"))
    producer.init_transactions(30)
    producer.begin_transaction()
    for key in (b"a", b"b", b"a"):
        producer.produce(topic, b"committed", key)
    producer.commit_transaction(30)  # offsets 0-2, then a commit marker at 3
    producer.begin_transaction()
    for key in (b"a", b"b"):
        producer.produce(topic, b"open", key)
    producer.flush(30)  # offsets 4-5 in a transaction left open
    try:
        with TopicReader(bootstrap) as reader:
            ends = reader.ends([(topic, 0)])
            assert ends == {(topic, 0): 4}  # the LSO, not the high watermark (6)
            started = time.monotonic()
            records = reader.read([Window(topic, 0, 0, ends[(topic, 0)])], timeout=10)
            # No record at offset 3 (the marker) ever comes; the read ends anyway, at once.
            assert time.monotonic() - started < 5
            assert [(r.offset, r.key, r.value) for r in records] == [
                (0, b"a", b"committed"),
                (1, b"b", b"committed"),
                (2, b"a", b"committed"),
            ]
            # The same reader reads again (partitions done before are not left paused).
            again = reader.read([Window(topic, 0, 1, 4)], keys={b"a"}, timeout=10)
            assert [r.offset for r in again] == [2]
            assert reader.read([Window(topic, 0, 4, 4)]) == []
            since = reader.windows_since([(topic, 0)], int(time.time() * 1000) + 60_000, ends)
            assert since[0].empty  # nothing that new
    finally:
        producer.commit_transaction(30)


def test_unreachable_broker_is_one_kafka_error() -> None:
    with (
        TopicReader("127.0.0.1:1") as reader,
        pytest.raises(KafkaOperationError, match=r"^cannot reach Kafka at 127\.0\.0\.1:1: "),
    ):
        reader.topics(timeout=1.0)
