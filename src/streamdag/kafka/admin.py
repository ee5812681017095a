"""Topic administration: create what is missing, verify what exists; which consumer groups
have members."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streamdag.errors import KafkaOperationError, TopicMismatch
from streamdag.kafka.config import admin_config
from streamdag.kafka.connection import KafkaConnection
from streamdag.kafka.diagnose import Diagnosis
from streamdag.settings import get_settings

__all__ = ["EnsureResult", "TopicSpec", "active_groups", "ensure_topics", "list_topics"]

_DIAGNOSE_EVERY_S = 0.5  # how often list_topics looks at what librdkafka reported


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)

    def kafka_config(self) -> dict[str, str]:
        config = dict(self.config)
        if self.compacted:
            config.setdefault("cleanup.policy", "compact")
        return config


@dataclass(frozen=True)
class EnsureResult:
    created: list[str]
    existing: list[str]


def list_topics(kafka: KafkaConnection | str, timeout: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count, for every topic the cluster has. Waits up to
    ``timeout`` for a broker, but no longer than it takes to learn that the credentials
    or the broker's certificate are refused."""
    kafka = KafkaConnection.of(kafka)
    diagnosis = Diagnosis(kafka)
    admin = AdminClient(admin_config(kafka, **diagnosis.config()))
    deadline = time.monotonic() + timeout
    while True:
        try:
            left = deadline - time.monotonic()
            metadata = admin.list_topics(timeout=max(0.0, min(_DIAGNOSE_EVERY_S, left)))
            return {name: len(t.partitions) for name, t in metadata.topics.items()}
        except KafkaException as exc:
            admin.poll(0)  # serves the error callbacks that tell why
            if diagnosis.conclusive or time.monotonic() >= deadline:
                raise KafkaOperationError(diagnosis.explain(exc.args[0].str())) from exc


def ensure_topics(
    kafka: KafkaConnection | str,
    topics: list[TopicSpec],
    timeout: float = 30.0,
    *,
    replication_factor: int | None = None,
) -> EnsureResult:
    """Create missing topics; an existing topic must have the expected partition count.

    New topics get ``replication_factor`` replicas (default: the setting
    ``STREAMDAG_TOPIC_REPLICATION_FACTOR``; -1 leaves it to the cluster's
    ``default.replication.factor``). Idempotent: a topic created concurrently by another
    process counts as existing.
    """
    kafka = KafkaConnection.of(kafka)
    if replication_factor is None:
        replication_factor = get_settings().topic_replication_factor
    existing_counts = list_topics(kafka, min(timeout, 10.0))
    for spec in topics:
        actual = existing_counts.get(spec.name)
        if actual is not None and actual != spec.partitions:
            raise TopicMismatch(spec.name, spec.partitions, actual)
    missing = [t for t in topics if t.name not in existing_counts]
    created: list[str] = []
    if missing:
        admin = AdminClient(admin_config(kafka))
        futures = admin.create_topics(
            [
                NewTopic(t.name, t.partitions, replication_factor, config=t.kafka_config())
                for t in missing
            ],
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=timeout)
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise KafkaOperationError(
                        f"cannot create topic {name}: {exc.args[0].str()}"
                    ) from exc
    return EnsureResult(created=created, existing=[t.name for t in topics if t.name not in created])


def active_groups(kafka: KafkaConnection | str, prefix: str, timeout: float = 10.0) -> list[str]:
    """The consumer groups whose id starts with ``prefix`` and that have members (a member
    that died stays one until its session times out)."""
    admin = AdminClient(admin_config(KafkaConnection.of(kafka)))
    try:
        listed = admin.list_consumer_groups(request_timeout=timeout).result(timeout)
    except (KafkaException, TimeoutError) as exc:
        raise KafkaOperationError(f"cannot list consumer groups: {exc}") from exc
    idle = {ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD}
    return sorted(
        g.group_id for g in listed.valid if g.group_id.startswith(prefix) and g.state not in idle
    )
