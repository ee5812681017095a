"""Prometheus metrics of the engine, labelled by pipeline and step.

Defined once per process on prometheus-client's default registry; ``serve_metrics``
exposes them over HTTP for ``streamdag run --metrics-port``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from prometheus_client import Counter, Gauge, Histogram, start_http_server

__all__ = [
    "BATCH_SIZE",
    "COMMIT_SECONDS",
    "CONSUMER_LAG",
    "END_TO_END_SECONDS",
    "ERRORS",
    "GATEWAY_IN_FLIGHT",
    "JOIN_PENDING",
    "MODEL_SECONDS",
    "RECORDS_IN",
    "RECORDS_OUT",
    "RETRIES",
    "WORKER_LAST_LOOP",
    "observe_many",
    "serve_metrics",
]

_LABELS = ("pipeline", "step")

RECORDS_IN = Counter("streamdag_records_in_total", "Records consumed by a step.", _LABELS)
RECORDS_OUT = Counter(
    "streamdag_records_out_total", "Results a step committed to its outputs topic.", _LABELS
)
ERRORS = Counter(
    "streamdag_errors_total",
    "Records that failed for good and went to the errors topic, by error code.",
    (*_LABELS, "code"),
)
RETRIES = Counter("streamdag_retries_total", "Model calls retried after a failure.", _LABELS)
BATCH_SIZE = Histogram(
    "streamdag_batch_size",
    "Rows per model call.",
    _LABELS,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
MODEL_SECONDS = Histogram(
    "streamdag_model_seconds",
    "Seconds per model call.",
    _LABELS,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COMMIT_SECONDS = Histogram(
    "streamdag_commit_seconds",
    "Seconds per commit of a step's delivered batches: the transaction's offsets and commit "
    "(exactly_once), or the wait for acknowledgements and the offset commit (at_least_once).",
    _LABELS,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
END_TO_END_SECONDS = Histogram(
    "streamdag_end_to_end_seconds",
    "Seconds from a request's first timestamp to its result leaving a step.",
    _LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


CONSUMER_LAG = Gauge(
    "streamdag_consumer_lag",
    "Records waiting in a step's input partition (high watermark minus position).",
    (*_LABELS, "topic", "partition"),
)
JOIN_PENDING = Gauge(
    "streamdag_join_pending", "Requests a join step holds, waiting for more pieces.", _LABELS
)
WORKER_LAST_LOOP = Gauge(
    "streamdag_worker_last_loop_timestamp_seconds",
    "Unix time of a step worker's latest turn of its loop (updated every second or so); "
    "a worker stuck in a call stops moving it.",
    _LABELS,
)
GATEWAY_IN_FLIGHT = Gauge(
    "streamdag_gateway_in_flight",
    "Requests a gateway has sent to a pipeline and still waits for.",
    ("pipeline",),
)


def serve_metrics(port: int, addr: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread."""
    start_http_server(port, addr=addr)


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every value (a labelled child), as one update per
    bucket: a step observes every request of a batch, and each ``observe`` takes two
    locks. Falls back to ``observe`` if prometheus-client's histogram changes shape."""
    if not values:
        return
    buckets = getattr(histogram, "_buckets", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    total = getattr(histogram, "_sum", None)
    if buckets is None or bounds is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    # observe counts a value in the first bucket whose upper bound is >= the value.
    indices, counts = np.unique(np.searchsorted(bounds, values, side="left"), return_counts=True)
    for index, count in zip(indices.tolist(), counts.tolist(), strict=True):
        buckets[index].inc(count)
    total.inc(float(np.sum(values)))
