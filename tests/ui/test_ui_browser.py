"""The web view in headless Chromium against a running pipeline: the DAG is drawn with
a node per step, live figures fill in, a request search highlights the request's path,
and a screenshot shows it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from .browser import WINDOW, dump_dom, screenshot, share_of_colour
from .ui_support import STEPS, LivePipeline

pytestmark = pytest.mark.kafka

NUMBER = r"\d+(?:\.\d+)?"


def texts(dom: str, cls: str) -> list[str]:
    """The text of every SVG ``<text>`` whose class list starts with ``cls``."""
    return re.findall(rf'<text class="{cls}[^"]*"[^>]*>([^<]*)</text>', dom)


def warm(live: LivePipeline) -> None:
    """Two snapshots a moment apart, so the page's first one already has rates."""
    live.stats()
    time.sleep(1.6)
    live.stats()


def test_page_draws_the_dag_with_live_figures(live_pipeline: LivePipeline) -> None:
    warm(live_pipeline)
    rid = live_pipeline.ok[-1]
    dom = dump_dom(f"{live_pipeline.url}/ui/?request={rid}")

    for step in [*STEPS, "output"]:
        assert re.search(rf'<g class="node (step|join)[^"]*" data-id="{step}"', dom), step
    for topic in ["inputs", "outputs", "errors"]:
        assert f'data-id="{topic}"' in dom, topic
    assert len(re.findall(r'class="edge trigger\b', dom)) == 1  # merge -> review, when big
    assert "when merge.big" in dom

    rates = texts(dom, "fig fig-rate")
    assert len(rates) == len(STEPS) + 3  # the steps, output, inputs and outputs
    assert all(re.fullmatch(rf"{NUMBER} rec/s", r) for r in rates), rates
    latencies = texts(dom, "fig fig-latency")
    assert any(re.fullmatch(rf"p50 {NUMBER} · p99 {NUMBER} ms", t) for t in latencies)
    assert texts(dom, "fig fig-errors") == [
        *["errors 2", "errors 0", "errors 0", "errors 0", "errors 0", "errors 0"],
        "2 errors",
    ]
    assert re.search(r'<tr data-step="clean"><td>clean</td>', dom)

    # The search ran from the address: its records, and its path lit on the graph.
    assert f"request {rid}:" in dom
    for step in STEPS:
        assert f'<li data-role="step" data-step="{step}">' in dom, step
    lit = re.findall(r'<g class="node [^"]*\bhit\b[^"]*" data-id="([^"]+)"', dom)
    assert set(lit) == {"inputs", *STEPS, "outputs"}

    # The latest errors, newest first, with the failing step.
    for failed in live_pipeline.failed:
        assert failed in dom
    assert dom.count('<td class="bad">model_error</td>') == 2


def test_screenshot_shows_the_dag(live_pipeline: LivePipeline, tmp_path: Path) -> None:
    warm(live_pipeline)
    pixels = screenshot(f"{live_pipeline.url}/ui/", tmp_path / "ui.png")
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    assert pixels[..., :3].std() > 0.1  # not a blank page
    assert share_of_colour(pixels, "#1d2330") > 0.02  # the header bar
    assert share_of_colour(pixels, "#eef4ff") > 0.02  # the step boxes
    assert share_of_colour(pixels, "#f3eefe") > 0.005  # the join boxes
