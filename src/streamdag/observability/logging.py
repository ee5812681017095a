"""Logging for the command line and long-running processes: text or JSON lines.

Lines about a record carry ``pipeline``, ``step``, ``request_id`` and ``trace_id`` (pass
them with ``extra=record_context(...)``); lifecycle lines carry ``pipeline`` and ``step``.
In JSON form every such field is a key, so a log pipeline can index them.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

__all__ = ["JsonFormatter", "configure_logging", "record_context"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FIELDS = ("pipeline", "step", "request_id", "trace_id")


def record_context(
    pipeline: str, step: str, request_id: str | None = None, trace_id: str | None = None
) -> dict[str, Any]:
    """``extra=`` for a log line about a record (or, without ids, about a worker)."""
    context: dict[str, Any] = {"pipeline": pipeline, "step": step}
    if request_id is not None:
        context["request_id"] = request_id
    if trace_id is not None:
        context["trace_id"] = trace_id
    return context


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in _FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class _StderrHandler(logging.Handler):
    """Writes each line to whatever ``sys.stderr`` is at that moment (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def configure_logging(
    level: str = "INFO", *, kafka_client_level: str = "WARNING", fmt: str = "text"
) -> None:
    """Log to stderr. ``kafka_client_level`` governs librdkafka's own lines, which one-shot
    commands silence (they report failures themselves, in one line)."""
    root = logging.getLogger("streamdag")
    if not root.handlers:
        root.addHandler(_StderrHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_FORMAT))
    root.setLevel(level.upper())
    root.propagate = False
    logging.getLogger("streamdag.kafka.librdkafka").setLevel(kafka_client_level.upper())
