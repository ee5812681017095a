"""Logging set-up for the command line and long-running processes."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO", *, kafka_client_level: str = "WARNING") -> None:
    """Log to stderr. ``kafka_client_level`` governs librdkafka's own lines, which one-shot
    commands silence (they report failures themselves, in one line)."""
    root = logging.getLogger("streamdag")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    logging.getLogger("streamdag.kafka.librdkafka").setLevel(kafka_client_level.upper())
