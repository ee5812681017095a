"""confluent-kafka client configurations for each role, in one place.

Every client streamdag makes starts from ``client_config``: the connection's properties
(servers, security, anything else the user set), then what the role needs; the role's
settings win, so the delivery semantics live here and nowhere else.
"""

from __future__ import annotations

import logging
from typing import Any

from streamdag.kafka.connection import MESSAGE_MAX_BYTES, KafkaConnection

__all__ = [
    "KAFKA_CLIENT_LOGGER",
    "MESSAGE_MAX_BYTES",
    "admin_config",
    "client_config",
    "consumer_config",
    "producer_config",
]

ClientConfig = dict[str, Any]

# librdkafka's own log lines go through Python logging instead of straight to stderr.
KAFKA_CLIENT_LOGGER = logging.getLogger("streamdag.kafka.librdkafka")


# How every client reconnects; a connection's own properties may say otherwise.
_RECONNECT: ClientConfig = {
    # While a broker is away librdkafka backs off reconnecting up to 10 s by default, so a
    # client could notice the broker's return only that late; 1 s, as Java clients.
    "reconnect.backoff.max.ms": 1000,
    # No re-bootstrap when every known broker is down. In librdkafka 2.16 it retires the
    # broker handles learned from metadata, but a transactional producer's coordinator
    # cache keeps the retired one and send_offsets_to_transaction waits for it forever,
    # even once the broker is back (confluentinc/librdkafka#5511, #5456); and while the
    # outage lasts the clients re-bootstrap in a loop, reconnecting every few ms. Kept, the
    # handles reconnect by their advertised addresses when the broker returns. (A cluster
    # that comes back under all new addresses needs a restart.)
    "metadata.recovery.strategy": "none",
}


def client_config(
    kafka: KafkaConnection | str, client_id: str = "streamdag", **extra: Any
) -> ClientConfig:
    """``kafka``'s properties (a bare string: plaintext servers) and ``extra``."""
    return {
        **_RECONNECT,
        **KafkaConnection.of(kafka).client_properties(),
        "client.id": client_id,
        "logger": KAFKA_CLIENT_LOGGER,
        **extra,
    }


def admin_config(kafka: KafkaConnection | str, **extra: Any) -> ClientConfig:
    return client_config(kafka, "streamdag-admin", **extra)


def consumer_config(
    kafka: KafkaConnection | str, group_id: str, *, client_id: str = "streamdag", **extra: Any
) -> ClientConfig:
    """A consumer that never commits on its own and reads only committed transactions.

    Offsets are committed by the engine (in the transaction, or after delivery), never
    by a timer: auto-commit could mark a record done before its result is written.
    """
    return client_config(
        kafka,
        client_id,
        **{
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "cooperative-sticky",
            **extra,
        },
    )


def producer_config(
    kafka: KafkaConnection | str,
    *,
    transactional_id: str | None = None,
    client_id: str = "streamdag",
    **extra: Any,
) -> ClientConfig:
    """An idempotent producer (acks=all); transactional when ``transactional_id`` is given."""
    config = client_config(
        kafka,
        client_id,
        **{
            "enable.idempotence": True,
            "acks": "all",
            # Java-compatible key hashing: see kafka/partitioner.py.
            "partitioner": "murmur2_random",
            # Short: every hop of a request waits for it; under load batches fill anyway.
            "linger.ms": 1,
            "compression.type": "lz4",
            **extra,
        },
    )
    if transactional_id is not None:
        config["transactional.id"] = transactional_id
        # A transaction begun right after the previous commit often meets the broker still
        # writing its markers (CONCURRENT_TRANSACTIONS); retry in 10 ms, not the default
        # 100 ms, as the Java client does (KAFKA-5477).
        config.setdefault("retry.backoff.ms", 10)
    return config
