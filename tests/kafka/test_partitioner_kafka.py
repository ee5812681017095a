"""Our partition function agrees with librdkafka's murmur2_random on the real broker."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Producer

from streamdag.kafka import producer_config
from streamdag.kafka.partitioner import murmur2, partition_for


def test_murmur2_matches_the_java_client_vectors() -> None:
    # Values from Kafka's own UtilsTest.testMurmur2 (Java ints, as unsigned here).
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        bytes([ord("a"), ord("b"), ord("c")]): 479470107,
    }
    for key, java_int in cases.items():
        assert murmur2(key) == java_int & 0xFFFFFFFF, key


def test_partition_for_matches_librdkafka(
    bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(7)
    producer = Producer(producer_config(bootstrap))
    landed: dict[bytes, int] = {}

    def on_delivery(err: object, msg: object) -> None:
        assert err is None
        landed[msg.key()] = msg.partition()  # type: ignore[attr-defined]

    keys = [f"req-{i}".encode() for i in range(200)]
    for key in keys:
        producer.produce(topic, b"v", key, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert landed == {key: partition_for(key, 7) for key in keys}
