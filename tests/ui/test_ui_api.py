"""The web view's JSON API over a running pipeline: the graph, live figures read from
Kafka (throughput, latency, lag, errors), the request search and the page's files."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from kafka_support import send_requests

from streamdag.observability.live import LiveStats
from streamdag.pipeline import compile_plan

from .ui_support import STEPS, LivePipeline, ui_server, write_pipeline

pytestmark = pytest.mark.kafka


def step_figures(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in stats["steps"]}


def test_lists_the_served_pipeline(live_pipeline: LivePipeline) -> None:
    response = live_pipeline.api("pipelines")
    assert response.status_code == 200
    assert response.json() == [
        {
            "name": live_pipeline.spec.name,
            "version": "1",
            "guarantee": "exactly_once",
            "partitions": 3,
        }
    ]


def test_graph_has_steps_topics_joins_and_triggers(live_pipeline: LivePipeline) -> None:
    name = live_pipeline.spec.name
    graph = live_pipeline.api(f"pipelines/{name}/graph").json()
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert set(nodes) == {*STEPS, "inputs", "output", "outputs", "errors"}
    assert nodes["merge"]["join"] == "inner"
    assert nodes["output"]["join"] == "outer"
    assert nodes["review"]["when"] == ["merge.outputs.big"]
    assert nodes["clean"]["topic"] == f"streamdag.{name}.clean.outputs"
    assert nodes["clean"]["group"] == f"streamdag.{name}.clean"
    assert [nodes[s]["layer"] for s in STEPS] == [1, 2, 2, 3, 4]
    edges = {(e["from"], e["to"]): e for e in graph["edges"]}
    assert set(edges) == {
        ("inputs", "clean"),
        ("clean", "left"),
        ("clean", "right"),
        ("left", "merge"),
        ("right", "merge"),
        ("merge", "review"),
        ("merge", "output"),
        ("review", "output"),
        ("output", "outputs"),
    }
    assert edges[("merge", "review")]["when"] == ["big"]
    assert edges[("merge", "review")]["tensors"] == ["total"]


def test_figures_cover_every_step(live_pipeline: LivePipeline) -> None:
    stats = live_pipeline.stats()
    steps = step_figures(stats)
    assert list(steps) == [*STEPS, "output"]
    for name in ["clean", "left", "right", "merge", "review"]:
        step = steps[name]
        assert step["samples"] > 0, name
        assert 0 <= step["p50_ms"] <= step["p99_ms"] < 20_000, name
    # Only the three big requests ran review; its skip markers are not results.
    assert steps["review"]["samples"] == 3
    assert steps["clean"]["samples"] == len(live_pipeline.ok)
    assert stats["outputs"]["samples"] == len(live_pipeline.ok)
    assert stats["outputs"]["p50_ms"] <= stats["outputs"]["p99_ms"]


def test_caught_up_steps_have_no_lag(live_pipeline: LivePipeline) -> None:
    # Every request was answered, so every step committed all it read: the commit markers
    # that end each partition must not count as records waiting.
    steps = step_figures(live_pipeline.stats())
    for name, step in steps.items():
        assert step["lag"] == 0, (name, step["lag_by_partition"])
    assert len(steps["merge"]["lag_by_partition"]) == 6  # two topics of 3 partitions


def test_throughput_counts_records_not_offsets(live_pipeline: LivePipeline) -> None:
    live_pipeline.stats()
    time.sleep(1.6)  # past the snapshot's cache
    before = live_pipeline.stats()
    ok, failed = live_pipeline.send([float(v) for v in range(20, 30)], prefix="rate")
    assert failed == []
    live_pipeline.ok.extend(ok)
    time.sleep(1.6)
    after = live_pipeline.stats()
    assert after["window_s"] is not None and after["window_s"] > 1
    window = after["window_s"]
    steps = step_figures(after)
    # Each request is its own transaction: 10 records and 10 commit markers per step.
    for name in ["clean", "left", "right", "merge", "review"]:
        seen = steps[name]["records_per_s"] * window
        assert 7 <= seen <= 13, (name, seen)
    assert 7 <= after["inputs"]["records_per_s"] * window <= 13
    assert 7 <= after["outputs"]["records_per_s"] * window <= 13
    assert before["errors"] == after["errors"]


def test_rates_after_a_pause_longer_than_the_window_cover_the_pause(
    live_pipeline: LivePipeline,
) -> None:
    live = LiveStats(compile_plan(live_pipeline.spec), live_pipeline.bootstrap, window_s=0.5)
    assert live.read().window_s is None  # nothing to measure against yet
    time.sleep(1.2)
    figures = live.read()
    assert figures.window_s is not None and figures.window_s >= 1.2
    assert figures.inputs.records_per_s is not None
    assert all(step.records_per_s is not None for step in figures.steps)


def test_errors_are_counted_and_listed(live_pipeline: LivePipeline) -> None:
    stats = live_pipeline.stats()
    assert stats["errors"] == 2
    assert stats["errors_by_code"] == {"model_error": 2}
    assert step_figures(stats)["clean"]["errors"] == 2
    errors = live_pipeline.api(f"pipelines/{live_pipeline.spec.name}/errors").json()
    assert errors["errors"] == 2
    latest = errors["latest"]
    assert [e["request_id"] for e in latest] == list(reversed(live_pipeline.failed))
    for entry in latest:
        assert entry["error"]["step"] == "clean"
        assert entry["error"]["code"] == "model_error"
        assert "clean cannot take 13" in entry["error"]["message"]
        # Values only when asked, and this server does not let them be asked for.
        assert "head" not in entry["tensors"][0]
        assert entry["tensors"][0]["digest"].startswith("sha256:")
    refused = live_pipeline.api(f"pipelines/{live_pipeline.spec.name}/errors", values="1")
    assert refused.status_code == 403 and "--ui-show-values" in refused.text


def test_request_search_shows_the_path(live_pipeline: LivePipeline) -> None:
    name = live_pipeline.spec.name
    rid = live_pipeline.ok[0]
    response = live_pipeline.api(f"pipelines/{name}/requests/{rid}")
    assert response.status_code == 200, response.text
    trace = response.json()
    assert trace["request_id"] == rid
    labels = [h["step"] if h["role"] == "step" else h["role"] for h in trace["hops"]]
    assert labels[0] == "inputs" and labels[-1] == "outputs"
    assert set(labels) == {"inputs", *STEPS, "outputs"}
    review = next(h for h in trace["hops"] if h["step"] == "review")
    assert review["skipped"]  # x = 1 is small: the trigger did not fire

    failed = live_pipeline.failed[0]
    trace = live_pipeline.api(f"pipelines/{name}/requests/{failed}").json()
    errors = [h for h in trace["hops"] if h["error"] is not None]
    assert {h["role"] for h in errors} >= {"errors", "outputs"}


def test_request_search_answers_what_is_wrong(live_pipeline: LivePipeline) -> None:
    name = live_pipeline.spec.name
    missing = live_pipeline.api(f"pipelines/{name}/requests/no-such-request")
    assert missing.status_code == 404
    assert "no-such-request" in missing.json()["error"]
    bad = live_pipeline.api(f"pipelines/{name}/requests/x", since="yesterday-ish")
    assert bad.status_code == 400
    assert "since" in bad.json()["error"]
    assert live_pipeline.api("pipelines/nope/stats").status_code == 404
    assert live_pipeline.api("pipelines/nope/graph").status_code == 404


def test_serves_the_page_and_its_files(live_pipeline: LivePipeline) -> None:
    base = f"{live_pipeline.url}/ui"
    redirect = httpx.get(base, timeout=10)
    assert redirect.status_code == 307
    page = httpx.get(base, timeout=10, follow_redirects=True)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="static/ui.js"' in page.text
    for name, kind in [("ui.js", "text/javascript"), ("ui.css", "text/css")]:
        response = httpx.get(f"{base}/static/{name}", timeout=10)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
    assert httpx.get(f"{base}/static/../rest.py", timeout=10).status_code == 404
    assert httpx.get(f"{base}/static/secret.py", timeout=10).status_code == 404
    # Nothing is loaded from elsewhere: the machine may have no internet.
    for text in [page.text, httpx.get(f"{base}/static/ui.js", timeout=10).text]:
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


def test_lag_of_requests_no_worker_took(
    bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    spec = write_pipeline(tmp_path, unique_name("ui"))
    with ui_server(spec, bootstrap) as server:  # no workers: the requests wait
        ids = [(f"w{i}", {"x": np.array([[float(i)]], dtype=np.float32)}) for i in range(7)]
        send_requests(bootstrap, spec.name, ids)
        url = f"http://127.0.0.1:{server.http_port}/ui/api/pipelines/{spec.name}/stats"
        stats = httpx.get(url, timeout=60).json()
    steps = step_figures(stats)
    assert steps["clean"]["lag"] == 7
    assert sum(steps["clean"]["lag_by_partition"].values()) == 7
    assert all(steps[s]["lag"] == 0 for s in ["left", "right", "merge", "review", "output"])
    assert steps["clean"]["p50_ms"] is None and steps["clean"]["samples"] == 0
    assert stats["errors"] == 0 and stats["latest_errors"] == []
