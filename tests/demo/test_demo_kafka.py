"""The demo end to end on the session broker: 20 notes through REST and gRPC, one answer
each, both routes taken, and no process left behind; kept running, its web view shows the
live figures of its cluster."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter

import httpx
from demo_support import Trained
from kafka_support import count_by_id, read_results
from ui.browser import dump_dom

from streamdag.demo import DemoOptions, run_demo
from streamdag.kafka import KafkaConnection
from streamdag.pipeline import load_spec


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_every_note_gets_exactly_one_answer(trained: Trained, bootstrap: str) -> None:
    out: list[str] = []
    status: list[str] = []
    options = DemoOptions(
        docs=20, kafka=KafkaConnection.of(bootstrap), concurrency=4, example=trained.example.root
    )
    report = run_demo(options, out=out.append, status=status.append)

    assert report.ok, report.summary()
    assert (report.sent, report.answered, report.errors) == (20, 20, 0)
    assert sorted(a.doc.id for a in report.answers) == [f"doc-{i:04d}" for i in range(20)]
    assert Counter(a.door for a in report.answers) == {"REST": 10, "gRPC": 10}
    routes = Counter(a.route for a in report.answers)
    assert routes["auto"] > routes["review"] > 0, routes
    for a in report.answers:
        assert a.codes, a  # every synthetic patient has a condition
        assert a.risk_score > 0.3 and (a.route == "review") == bool(a.reason)
        if a.route == "review":
            assert a.queue in ("cdi-query", "coding-review")
    assert sum(a.codes_match for a in report.answers) >= 16
    assert any(line.startswith("20/20 documents answered") for line in out)
    assert any("errors 0" in line for line in out)

    # Kafka holds one final answer per request: the notes and the two warm-up requests.
    name = load_spec(trained.example.spec_path).name
    results = read_results(bootstrap, name, until=22, timeout=30, settle=1.0)
    counts = count_by_id(results)
    assert {k: v for k, v in counts.items() if k.startswith("doc-")} == {
        f"doc-{i:04d}": 1 for i in range(20)
    }
    assert all(r.error is None for r in results)

    pids = [int(p) for line in status for p in re.findall(r"pid (\d+)", line)]
    assert len(pids) == 2 and all(_gone(pid) for pid in pids)


def test_the_kept_demo_web_view_shows_live_figures(trained: Trained, bootstrap: str) -> None:
    """``streamdag demo --keep`` names its web view; opened in Chromium, the page reads the
    demo's cluster (not the settings' default) and fills in its figures. SIGTERM ends it,
    as it would at a terminal."""
    kept = threading.Event()
    out: list[str] = []
    seen: dict[str, str] = {}

    def visit() -> None:
        try:
            if not kept.wait(300):
                return
            url = next(line.split()[-1] for line in out if line.strip().startswith("web view"))
            # Two snapshots a moment apart, as a viewer's page takes them: rates need both.
            pipeline = load_spec(trained.example.spec_path).name
            for pause in (1.6, 0.0):
                httpx.get(f"{url}/api/pipelines/{pipeline}/stats", timeout=30)
                time.sleep(pause)
            seen["dom"] = dump_dom(url + "/")
        except BaseException as exc:  # reported by the test, after the demo stopped
            seen["error"] = repr(exc)
        finally:
            # The demo's handler, set in this (the main) thread, ends the keep.
            if kept.is_set():
                os.kill(os.getpid(), signal.SIGTERM)

    def say(line: str) -> None:
        out.append(line)
        if line.startswith("Try:"):
            kept.set()

    visitor = threading.Thread(target=visit, daemon=True)
    visitor.start()
    options = DemoOptions(
        docs=4,
        kafka=KafkaConnection.of(bootstrap),
        concurrency=2,
        keep=True,
        example=trained.example.root,
    )
    report = run_demo(options, out=say, status=lambda line: None)
    visitor.join(120)

    assert report.ok, report.summary()
    assert "error" not in seen, seen["error"]
    dom = seen["dom"]
    assert "cannot reach Kafka" not in dom
    refreshes = re.search(r'data-refreshes="(\d+)"', dom)
    assert refreshes is not None and int(refreshes.group(1)) >= 1, dom[-3000:]
    rates = re.findall(r'<text class="fig fig-rate[^"]*"[^>]*>([^<]*)</text>', dom)
    assert rates and all(re.fullmatch(r"\d+(?:\.\d+)? rec/s", r) for r in rates), rates
    latencies = re.findall(r'<text class="fig fig-latency[^"]*"[^>]*>([^<]*)</text>', dom)
    assert any(re.fullmatch(r"p50 \d+(?:\.\d+)? · p99 \d+(?:\.\d+)? ms", t) for t in latencies)
    assert re.search(r"<span id=\"sum-ready\" class=\"v\"[^>]*>yes</span>", dom), dom
