"""Options shared by several commands."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from streamdag.errors import StreamdagError, Unavailable
from streamdag.kafka import KafkaConnection

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "kafka_options",
    "payload_store_option",
    "resolve_kafka",
    "show_values_option",
    "with_serve_hint",
]

NO_SERVER_HINT = (
    "is a server running there? `streamdag serve PIPELINE.yaml` starts one "
    "(REST on 127.0.0.1:8080, gRPC on :8081)"
)


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


def with_serve_hint(exc: StreamdagError) -> StreamdagError:
    """``exc`` with a hint to start ``streamdag serve`` when it says that nothing answered
    at the address (connection refused, no such host), as a newcomer's first ``infer``
    does; any other error as it is. A server that answers 503 (a pipeline not ready) is
    running, and gets no hint."""
    if isinstance(exc, Unavailable) and _not_connected(exc.__cause__):
        return Unavailable(f"{exc.message}; {NO_SERVER_HINT}")
    return exc


def _not_connected(cause: BaseException | None) -> bool:
    # Imported here: the command that calls this has imported them already.
    import grpc
    import httpx

    if isinstance(cause, httpx.TransportError):
        return True
    if isinstance(cause, grpc.RpcError) and isinstance(cause, grpc.Call):
        return cause.code() is grpc.StatusCode.UNAVAILABLE and "connect" in (cause.details() or "")
    return False


def freeze_startup_objects() -> None:
    """Hide what exists now (imported modules, specs, settings: tens of thousands of
    objects that live as long as the process) from the cyclic garbage collector, so that
    its full collections, which would otherwise scan them all (about 12 ms), stop pausing
    requests on their way through a worker or the gateway. Called by long-running
    commands once they are set up."""
    gc.collect()
    gc.freeze()
