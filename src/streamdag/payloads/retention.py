"""How long payload-store objects are kept, and the sweep that deletes older ones.

An object must outlive every record that names it: a stub on the inputs topic is read
again by ``errors --replay``, one on the errors topic by ``inspect``. So objects are kept
for the longer of the store's own retention (``STREAMDAG_PAYLOAD_RETENTION_S``) and the
longest ``retention.ms`` of the ``streamdag.*`` topics that delete by age, as the broker
reports it when the sweep runs. A topic that keeps records forever (``retention.ms``
-1) means no object is ever deleted. Compacted topics (join state) are left out: their
records name objects only while a join waits, far shorter than any retention.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # not in its __all__
    AdminClient,
    ConfigResource,
    ResourceType,
)

from streamdag.errors import KafkaOperationError
from streamdag.kafka import KafkaConnection, admin_config, list_topics
from streamdag.payloads.store import PayloadStore
from streamdag.pipeline.topics import TOPICS_PREFIX

__all__ = ["effective_retention_s", "start_sweeper", "sweep", "topic_retention_s"]

log = logging.getLogger("streamdag.payloads")

SWEEP_EVERY_S = 3600.0


def topic_retention_s(
    kafka: KafkaConnection | str, topics: Iterable[str] | None = None, timeout: float = 30.0
) -> dict[str, float | None]:
    """``retention.ms`` in seconds of ``topics`` (default: every ``streamdag.*`` topic)
    that delete by age; None for a topic that keeps its records forever."""
    kafka = KafkaConnection.of(kafka)
    if topics is None:
        topics = [t for t in list_topics(kafka) if t.startswith(TOPICS_PREFIX)]
    names = sorted(topics)
    if not names:
        return {}
    admin = AdminClient(admin_config(kafka))
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    out: dict[str, float | None] = {}
    try:
        for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
            config = future.result(timeout=timeout)
            policy = config.get("cleanup.policy")
            if policy is not None and "delete" not in str(policy.value):
                continue
            entry = config.get("retention.ms")
            ms = int(entry.value) if entry is not None and entry.value is not None else -1
            out[resource.name] = None if ms < 0 else ms / 1000
    except KafkaException as exc:
        raise KafkaOperationError(
            f"cannot read the topics' retention.ms: {exc.args[0].str()}"
        ) from exc
    return out


def effective_retention_s(
    store: PayloadStore, kafka: KafkaConnection | str, topics: Iterable[str] | None = None
) -> float | None:
    """How old an object must be before it may be deleted: the store's retention or the
    topics' longest, whichever is longer; None: never."""
    longest = store.retention_s
    for seconds in topic_retention_s(kafka, topics).values():
        if seconds is None:
            return None
        longest = max(longest, seconds)
    return longest


def sweep(store: PayloadStore, kafka: KafkaConnection | str) -> tuple[float | None, list[str]]:
    """Delete the objects older than the effective retention; it and the folders deleted."""
    retention = effective_retention_s(store, kafka)
    if retention is None:
        return None, []
    return retention, store.sweep(retention)


def start_sweeper(
    store: PayloadStore,
    kafka: KafkaConnection | str,
    stop: threading.Event,
    every_s: float = SWEEP_EVERY_S,
) -> threading.Thread:
    """A daemon thread that sweeps at once and then every ``every_s`` until ``stop``; a
    failed sweep is logged and tried again next time."""

    def loop() -> None:
        while True:
            try:
                retention, _ = sweep(store, kafka)
                if retention is None:
                    log.info("payload store %s: a topic keeps records forever; no sweep", store.url)
            except Exception as exc:  # the store or Kafka may be back next time
                log.warning("payload store %s: sweep failed: %s", store.url, exc)
            if stop.wait(every_s):
                return

    thread = threading.Thread(target=loop, name="payload-sweep", daemon=True)
    thread.start()
    return thread
