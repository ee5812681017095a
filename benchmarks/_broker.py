"""The Kafka broker a benchmark runs against: the one given, or a fresh local one; and
the clean-up of a benchmark's topics on a broker that outlives it."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from confluent_kafka.admin import AdminClient

from streamdag.broker import LocalBroker, free_port
from streamdag.errors import BrokerNotRunning
from streamdag.kafka import admin_config, list_topics
from streamdag.settings import get_settings

__all__ = ["delete_topics", "kafka_bootstrap"]

log = logging.getLogger("benchmarks")


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through the finally blocks below, so the broker is stopped.
    sys.exit(128 + signum)


@contextlib.contextmanager
def kafka_bootstrap(bootstrap: str | None, *, heap: str = "768m") -> Iterator[str]:
    """Yield ``bootstrap`` if given; else start a broker on a free port in a temporary
    folder, yield its address, and stop it (and delete the folder) whatever happens."""
    if bootstrap:
        yield bootstrap
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="streamdag-bench-") as tmp:
            broker = LocalBroker(Path(tmp), libs_dir=get_settings().kafka_libs, heap=heap)
            try:
                info = broker.start(port=free_port(), timeout=90)
                yield info.bootstrap
            finally:
                # Also covers a start interrupted after the JVM was launched.
                with contextlib.suppress(BrokerNotRunning):
                    broker.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)


def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Delete those of ``names`` that exist; a failure is logged, not raised."""
    existing = list_topics(bootstrap)
    names = [n for n in names if n in existing]
    if not names:
        return
    admin = AdminClient(admin_config(bootstrap))  # must outlive the futures
    futures = admin.delete_topics(names, request_timeout=30)
    for future in futures.values():
        try:
            future.result(30)
        except Exception as exc:
            log.warning("could not delete a benchmark topic: %s", exc)
