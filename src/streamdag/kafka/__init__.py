"""Thin confluent-kafka wrappers: client configs, topic admin."""

from streamdag.kafka.admin import EnsureResult, TopicSpec, ensure_topics, list_topics
from streamdag.kafka.config import (
    MESSAGE_MAX_BYTES,
    admin_config,
    client_config,
    consumer_config,
    producer_config,
)
from streamdag.kafka.connection import KafkaConnection

__all__ = [
    "MESSAGE_MAX_BYTES",
    "EnsureResult",
    "KafkaConnection",
    "TopicSpec",
    "admin_config",
    "client_config",
    "consumer_config",
    "ensure_topics",
    "list_topics",
    "producer_config",
]
