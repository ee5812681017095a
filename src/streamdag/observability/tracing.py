"""Distributed tracing: one trace per request, from the front door through every step.

The W3C ``traceparent`` header carries the context: the gateway starts (or continues) the
trace, and each step records a span per request, with child spans for the time the record
waited in Kafka, the wait for its micro-batch, the model call and the produce, then
passes its own context on in the records it writes.

Spans are exported over OTLP/gRPC when ``STREAMDAG_OTLP_ENDPOINT`` is set. Otherwise
tracing is off and costs one ``is None`` check per batch: no span objects are made.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from streamdag.extras import require
from streamdag.settings import get_settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "SpanKind",
    "child_span",
    "configure_tracing",
    "shutdown_tracing",
    "start_span",
    "trace_id_of",
    "traceparent_of",
    "tracer",
]

_PROPAGATOR = TraceContextTextMapPropagator()
_lock = threading.Lock()
_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def configure_tracing(service: str, endpoint: str | None = None) -> bool:
    """Export spans to ``endpoint`` (default: ``STREAMDAG_OTLP_ENDPOINT``); False when no
    endpoint is set and tracing stays off. Idempotent within a process."""
    global _provider, _tracer
    endpoint = endpoint or get_settings().otlp_endpoint
    if not endpoint:
        return False
    with _lock:
        if _tracer is not None:
            return True
        # Imported here: the SDK and the exporter's gRPC plumbing (the otel extra) are for
        # traced runs only.
        what = "exporting traces (STREAMDAG_OTLP_ENDPOINT)"
        otlp = require(
            "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", extra="otel", what=what
        )
        resources = require("opentelemetry.sdk.resources", extra="otel", what=what)
        sdk_trace = require("opentelemetry.sdk.trace", extra="otel", what=what)
        export = require("opentelemetry.sdk.trace.export", extra="otel", what=what)

        provider = sdk_trace.TracerProvider(
            resource=resources.Resource.create({"service.name": service})
        )
        exporter = otlp.OTLPSpanExporter(endpoint=endpoint, insecure=True)
        provider.add_span_processor(export.BatchSpanProcessor(exporter, schedule_delay_millis=500))
        _provider = provider
        _tracer = provider.get_tracer("streamdag")
    return True


def shutdown_tracing() -> None:
    """Export what is buffered and stop; tracing is off afterwards."""
    global _provider, _tracer
    with _lock:
        if _provider is not None:
            _provider.force_flush()
            _provider.shutdown()
        _provider = None
        _tracer = None


def tracer() -> Tracer | None:
    """The tracer, or None when tracing is off."""
    return _tracer


def start_span(
    name: str,
    traceparent: str | None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    start_ns: int | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Span | None:
    """A span continuing ``traceparent`` (a new trace when None); None when tracing is off."""
    if _tracer is None:
        return None
    parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
    return _tracer.start_span(
        name, context=parent, kind=kind, start_time=start_ns, attributes=dict(attributes or {})
    )


def child_span(
    parent: Span, name: str, start_ns: int, end_ns: int, attributes: Mapping[str, Any] | None = None
) -> None:
    """A finished child span of ``parent`` covering ``start_ns``..``end_ns``."""
    if _tracer is None:
        return
    ctx = trace.set_span_in_context(parent)
    span = _tracer.start_span(
        name, context=ctx, start_time=start_ns, attributes=dict(attributes or {})
    )
    span.end(end_time=max(start_ns, end_ns))


def traceparent_of(span: Span) -> str:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier["traceparent"]


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id in a ``traceparent`` value (for log lines), or None."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None
