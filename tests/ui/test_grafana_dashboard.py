"""docs/grafana-dashboard.json: valid JSON whose queries name only metrics that
``streamdag.observability.metrics`` exports, covering all of them, per pipeline."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from streamdag.observability import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
SUFFIXES = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}


def load() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return body


def exported() -> dict[str, str]:
    """Every series name the metrics module exposes -> the name of its metric."""
    names: dict[str, str] = {}
    for attr in metrics.__all__:
        metric = getattr(metrics, attr)
        if not isinstance(metric, MetricWrapperBase):
            continue
        for family in metric.describe():
            for suffix in SUFFIXES[family.type]:
                names[family.name + suffix] = family.name
    return names


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def test_every_queried_metric_exists() -> None:
    dashboard = load()
    names = exported()
    variables = [v.get("definition", "") for v in dashboard["templating"]["list"]]
    used = set()
    for text in [*queries(dashboard), *variables]:
        for name in re.findall(r"\bstreamdag_[a-z0-9_]+", text):
            assert name in names, f"{name} is not a metric of streamdag.observability.metrics"
            used.add(names[name])
    assert used == set(names.values())  # and every metric has a panel


def test_queries_follow_the_pipeline_variable() -> None:
    dashboard = load()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["pipeline"]["type"] == "query"
    assert "label_values(" in variables["pipeline"]["definition"]
    assert variables["datasource"]["query"] == "prometheus"
    exprs = queries(dashboard)
    assert exprs
    for expr in exprs:
        assert 'pipeline=~"$pipeline"' in expr, expr


def test_panels_are_laid_out() -> None:
    dashboard = load()
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["description"], panel["title"]
