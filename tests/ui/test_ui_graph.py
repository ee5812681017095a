"""The DAG the web view draws, derived from specs alone, and the quantiles it shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdag.observability.live import percentile
from streamdag.pipeline import compile_plan, load_spec
from streamdag.serving.ui import pipeline_graph

ROOT = Path(__file__).resolve().parents[2]


def test_medical_records_graph() -> None:
    graph = pipeline_graph(
        compile_plan(load_spec(ROOT / "examples" / "medical_records" / "pipeline.yaml"))
    )
    layers = {n["id"]: n["layer"] for n in graph["nodes"]}
    assert layers == {
        "inputs": 0,
        "normalize": 1,
        "sections": 2,
        "entities": 2,
        "assertion": 2,
        "coder": 3,
        "risk": 4,
        "gate": 4,
        "accept": 5,
        "review": 5,
        "output": 6,
        "outputs": 7,
        "errors": 7,
    }
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes["coder"]["join"] == "inner" and nodes["coder"]["window_ms"] == 30_000
    assert nodes["output"]["join"] == "outer" and nodes["output"]["kind"] == "join"
    assert nodes["sections"]["runtime"] == "onnx"
    assert nodes["errors"]["topic"] == "streamdag.medical-records.errors"
    into = {(e["from"], e["to"]): e for e in graph["edges"]}
    coder = [f for f, t in into if t == "coder"]
    assert coder == ["normalize", "sections", "entities", "assertion"]
    assert into[("normalize", "coder")]["tensors"] == ["*"]
    assert into[("normalize", "sections")]["tensors"] == ["clauses"]
    assert into[("coder", "risk")]["tensors"] == ["supported", "age", "sex"]
    assert into[("gate", "accept")]["when"] == ["accepted"]
    assert into[("gate", "review")]["when"] == ["needs_review"]
    assert {f for f, t in into if t == "output"} == {"risk", "accept", "review"}
    assert ("output", "outputs") in into


def test_linear_graph_has_no_output_join() -> None:
    graph = pipeline_graph(
        compile_plan(load_spec(ROOT / "src" / "streamdag" / "demo" / "quickstart.yaml"))
    )
    assert [n["id"] for n in graph["nodes"]] == [
        "inputs",
        "normalize",
        "features",
        "urgency",
        "outputs",
        "errors",
    ]
    assert [(e["from"], e["to"]) for e in graph["edges"]] == [
        ("inputs", "normalize"),
        ("normalize", "features"),
        ("features", "urgency"),
        ("urgency", "outputs"),
    ]
    assert all(e["when"] == [] for e in graph["edges"])


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.5, None),
        ([7.0], 0.99, 7.0),
        ([float(v) for v in range(100, 0, -1)], 0.5, 50.0),
        ([float(v) for v in range(1, 101)], 0.99, 99.0),
        ([1.0, 2.0], 0.99, 2.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected
