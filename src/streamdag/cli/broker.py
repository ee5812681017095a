"""``streamdag broker start|stop|status``: the local Kafka for development and tests."""

from __future__ import annotations

import time
from pathlib import Path

import click

from streamdag.broker import LocalBroker
from streamdag.settings import get_settings

__all__ = ["broker"]

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Broker data folder [env STREAMDAG_BROKER_DATA_DIR; default .streamdag/broker]",
)


def _broker(data_dir: Path | None) -> LocalBroker:
    settings = get_settings()
    return LocalBroker(
        data_dir or settings.broker_data_dir,
        libs_dir=settings.kafka_libs,
        java_home=settings.java_home,
        heap=settings.broker_heap,
    )


@click.group()
def broker() -> None:
    """Run a local Apache Kafka (KRaft, one node) for development and tests."""


@broker.command()
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Listener port on 127.0.0.1 [default: the last one used, else 9092]",
)
@_data_dir
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the broker to accept produce and consume.",
)
def start(port: int | None, data_dir: Path | None, timeout: float) -> None:
    """Start the broker in the background; print its bootstrap address when ready."""
    began = time.monotonic()
    info = _broker(data_dir).start(port=port, timeout=timeout)
    click.echo(f"{info.bootstrap}", nl=True)
    click.echo(
        f"broker ready in {time.monotonic() - began:.1f}s (pid {info.pid}, data {info.data_dir})",
        err=True,
    )


@broker.command()
@_data_dir
def stop(data_dir: Path | None) -> None:
    """Stop the broker cleanly (SIGTERM, then wait)."""
    info = _broker(data_dir).stop()
    click.echo(f"stopped broker pid {info.pid} ({info.bootstrap})")


@broker.command()
@_data_dir
def status(data_dir: Path | None) -> None:
    """Say whether the broker of a data dir runs, and where; exit 1 when it does not."""
    b = _broker(data_dir)
    info = b.status()
    if info is None:
        click.echo(f"not running (data {b.data_dir})")
        raise click.exceptions.Exit(1)
    click.echo(f"running at {info.bootstrap} (pid {info.pid}, data {info.data_dir})")
