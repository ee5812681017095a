"""Wait until a broker accepts a produce and serves it back to a consumer."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streamdag.errors import BrokerStartFailed

__all__ = ["HEALTH_TOPIC", "wait_until_ready"]

HEALTH_TOPIC = "__streamdag_health"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _round_trip(bootstrap: str, timeout: float) -> bool:
    """Produce one record to the health topic and read it back; False if not yet possible."""
    quiet: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "log_level": 0,
        "logger": lambda *_: None,
    }
    admin = AdminClient(quiet)
    futures = admin.create_topics([NewTopic(HEALTH_TOPIC, 1, 1)], request_timeout=timeout)
    try:
        futures[HEALTH_TOPIC].result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
            return False
    marker = uuid.uuid4().bytes
    delivered: list[int] = []
    producer = Producer({**quiet, "message.timeout.ms": int(timeout * 1000)})

    def on_delivery(err: object, msg: Any) -> None:
        if err is None:
            delivered.append(msg.offset())

    producer.produce(HEALTH_TOPIC, marker, on_delivery=on_delivery)
    producer.flush(timeout)
    if not delivered:
        return False
    consumer = Consumer({**quiet, "group.id": "__streamdag_health", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(HEALTH_TOPIC, 0, delivered[0])])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None and msg.value() == marker:
                return True
        return False
    finally:
        consumer.close()


def wait_until_ready(bootstrap: str, *, timeout: float, alive: Callable[[], bool]) -> None:
    """Return when ``bootstrap`` round-trips a record; raise BrokerStartFailed otherwise.

    ``alive`` reports whether the broker process still runs, so a broker that dies on
    start fails fast instead of waiting out the timeout.
    """
    host, _, port = bootstrap.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise BrokerStartFailed(f"the broker at {bootstrap} exited during start")
        if _port_open(host, int(port)) and _round_trip(bootstrap, timeout=5.0):
            return
        time.sleep(0.2)
    raise BrokerStartFailed(f"the broker at {bootstrap} was not ready within {timeout:.0f}s")
