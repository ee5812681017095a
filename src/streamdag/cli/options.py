"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from streamdag.kafka import KafkaConnection

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["kafka_options", "payload_store_option", "resolve_kafka", "show_values_option"]


def kafka_options(func: F) -> F:
    """``--bootstrap`` and ``--kafka-config``: how a command reaches Kafka."""
    func = click.option(
        "--kafka-config",
        "kafka_config",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        metavar="FILE",
        help="Kafka client properties (Java .properties, as the Kafka tools' "
        "--command-config): security.protocol, sasl.*, ssl.*, ... "
        "[env STREAMDAG_KAFKA_<PROPERTY>, dots as underscores]",
    )(func)
    return click.option(
        "--bootstrap",
        "-b",
        default=None,
        metavar="HOST:PORT",
        help="Kafka bootstrap servers; wins over --kafka-config's "
        "[env STREAMDAG_BOOTSTRAP_SERVERS; default localhost:9092]",
    )(func)


def resolve_kafka(bootstrap: str | None, kafka_config: Path | None) -> KafkaConnection:
    return KafkaConnection.from_settings(bootstrap=bootstrap, config_file=kafka_config)


def payload_store_option(func: F) -> F:
    """``--payload-store URL``: where records too large for Kafka keep their values."""
    return click.option(
        "--payload-store",
        "payload_store",
        default=None,
        metavar="URL",
        help="Payload store for records over STREAMDAG_PAYLOAD_INLINE_MAX_BYTES "
        "(file:///dir, s3://bucket/prefix, gs://...) [env STREAMDAG_PAYLOAD_STORE]",
    )(func)


def show_values_option(func: F) -> F:
    """``--show-values``: tensors' first values, which are hidden by default because in a
    medical pipeline they are patient text."""
    return click.option(
        "--show-values",
        "show_values",
        is_flag=True,
        help="Show tensors' first values; without it a tensor is shown by datatype, shape "
        "and a digest of its contents (sha256), since values may be patient data.",
    )(func)
