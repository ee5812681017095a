"""The demo end to end on the session broker: 20 notes through REST and gRPC, one answer
each, both routes taken, and no process left behind."""

from __future__ import annotations

import os
import re
from collections import Counter

from demo_support import Trained
from kafka_support import count_by_id, read_results

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
