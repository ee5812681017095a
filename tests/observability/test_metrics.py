"""Metric helpers without Kafka."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram

from streamdag.observability.metrics import observe_many


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    (metric,) = list(histogram.collect())
    return {
        (s.name, s.labels.get("le", "")): s.value
        for s in metric.samples
        if not s.name.endswith("_created")
    }


@pytest.mark.parametrize(
    "values",
    [
        [0.0, 0.005, 0.0050001, 0.3, 2.5, 2.5, 10.0, 11.0, 1e9],  # on and around the bounds
        [0.042] * 256,
        [],
    ],
    ids=["bounds", "one-bucket", "none"],
)
def test_observe_many_is_observe_for_each_value(values: list[float]) -> None:
    one_by_one = Histogram("e2e", "", ["step"], registry=CollectorRegistry())
    together = Histogram("e2e", "", ["step"], registry=CollectorRegistry())
    for value in values:
        one_by_one.labels("s").observe(value)
    observe_many(together.labels("s"), values)
    if values:
        assert _samples(together) == pytest.approx(_samples(one_by_one))
    assert sum(v for (name, le), v in _samples(together).items() if le == "+Inf") == len(values)
