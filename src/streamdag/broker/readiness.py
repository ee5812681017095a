"""Wait until a broker or cluster accepts a produce and serves it back to a consumer.

Clients are configured from a plain dict of librdkafka settings (``bootstrap.servers``
and, for a secured broker, the SASL_SSL settings of ``client.properties``), so readiness
proves exactly what a client will use.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streamdag.errors import BrokerStartFailed

__all__ = ["HEALTH_TOPIC", "wait_for_listener", "wait_for_node", "wait_until_ready"]

HEALTH_TOPIC = "__streamdag_health"


def _port_open(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _quiet(client_config: Mapping[str, str]) -> dict[str, Any]:
    return {**client_config, "log_level": 0, "logger": lambda *_: None}


def _metadata(client_config: Mapping[str, str], timeout: float) -> Any:
    """The cluster's metadata as the first broker that answers sees it, or None."""
    try:
        return AdminClient(_quiet(client_config)).list_topics(timeout=timeout)
    except KafkaException:
        return None


def _broker_ids(client_config: Mapping[str, str], timeout: float) -> set[int]:
    """Ids of the brokers the cluster's metadata lists (registered and not fenced)."""
    metadata = _metadata(client_config, timeout)
    return set() if metadata is None else set(metadata.brokers)


def _round_trip(client_config: Mapping[str, str], replication: int, timeout: float) -> bool:
    """Produce one record with acks=all to the health topic (``replication`` replicas) and
    read it back; False if not yet possible."""
    quiet = _quiet(client_config)
    admin = AdminClient(quiet)
    futures = admin.create_topics([NewTopic(HEALTH_TOPIC, 1, replication)], request_timeout=timeout)
    try:
        futures[HEALTH_TOPIC].result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
            return False
    marker = uuid.uuid4().bytes
    delivered: list[int] = []
    producer = Producer({**quiet, "acks": "all", "message.timeout.ms": int(timeout * 1000)})

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


def wait_until_ready(
    client_config: Mapping[str, str],
    *,
    brokers: int = 1,
    timeout: float,
    alive: Callable[[], bool],
) -> None:
    """Return when all ``brokers`` are in the metadata and a record round-trips with
    acks=all on a topic replicated to up to three of them; raise BrokerStartFailed
    otherwise.

    ``alive`` reports whether every node's process still runs, so a node that dies on
    start fails fast instead of waiting out the timeout.
    """
    bootstrap = client_config["bootstrap.servers"]
    first = bootstrap.split(",")[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise BrokerStartFailed(f"a broker of {bootstrap} exited during start")
        if (
            _port_open(first)
            and (brokers == 1 or len(_broker_ids(client_config, 2.0)) >= brokers)
            and _round_trip(client_config, min(brokers, 3), timeout=5.0)
        ):
            return
        time.sleep(0.2)
    raise BrokerStartFailed(f"the broker at {bootstrap} was not ready within {timeout:.0f}s")


def wait_for_node(
    client_config: Mapping[str, str],
    node: tuple[int, str],
    *,
    timeout: float,
    alive: Callable[[], bool],
) -> None:
    """Return when ``node`` (id, ``host:port``) answers a metadata request itself and is
    listed in it: a restarted broker opens its listener only once it has caught up with
    the metadata log and been unfenced. (Asking any other node would not do: a node
    killed a moment ago stays listed until the controller fences it.)"""
    node_id, address = node
    own = {**client_config, "bootstrap.servers": address}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise BrokerStartFailed(f"node {node_id} exited during start")
        if _port_open(address):
            metadata = _metadata(own, 2.0)
            if (
                metadata is not None
                and metadata.orig_broker_id == node_id
                and node_id in metadata.brokers
            ):
                return
        time.sleep(0.2)
    raise BrokerStartFailed(f"node {node_id} did not rejoin the cluster within {timeout:.0f}s")


def wait_for_listener(address: str, *, timeout: float, alive: Callable[[], bool]) -> None:
    """Return when something accepts connections on ``address`` (``host:port``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise BrokerStartFailed(f"the node listening on {address} exited during start")
        if _port_open(address):
            return
        time.sleep(0.2)
    raise BrokerStartFailed(f"nothing listened on {address} within {timeout:.0f}s")
