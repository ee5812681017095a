"""DAG shapes over the real broker: fan-out with an inner join, outer and any joins,
triggers, errors in a branch, and SIGKILL of every worker of a join pipeline."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kafka_support import Workers, count_by_id, read_results, send_requests

from streamdag.kafka import ensure_topics
from streamdag.pipeline import derive_topics, load_spec

FAN = """
name: "{name}"
guarantee: GUARANTEE
partitions: 3
models:
  split: {runtime: python, handler: "dag_models:split", outputs: [a, b]}
  left: {runtime: python, handler: "dag_models:LEFT", outputs: [l], batch: {max_size: 16}}
  right: {runtime: python, handler: "dag_models:RIGHT", outputs: [r]}
  combine: {runtime: python, handler: "dag_models:combine", outputs: [total, parts]}
retry: {max_attempts: 2, backoff_ms: 10}
steps:
  - {name: split, model: split}
  - {name: left, model: left, inputs: [split.outputs.a]}
  - {name: right, model: right, inputs: [split.outputs.b]}
  - name: both
    model: combine
    inputs: [left.outputs, right.outputs]
    join: JOIN
    join_window_ms: WINDOW
"""


def fan(
    guarantee: str = "exactly_once",
    join: str = "inner",
    right: str = "right",
    window: int = 20_000,
    left: str = "left",
) -> str:
    return (
        FAN.replace("GUARANTEE", guarantee)
        .replace("JOIN", join)
        .replace("RIGHT", right)
        .replace("LEFT", left)
        .replace("WINDOW", str(window))
    )


def _xs(n: int) -> list[tuple[str, dict[str, np.ndarray]]]:
    return [(f"j{i}", {"x": np.array([i], dtype=np.int64)}) for i in range(n)]


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_fan_out_and_inner_join(
    guarantee: str, bootstrap: str, pipeline_spec: Callable[[str], Path], running: Callable
) -> None:
    spec = load_spec(pipeline_spec(fan(guarantee)))
    requests = _xs(2000)
    with running(spec, bootstrap):
        send_requests(bootstrap, spec.name, requests)
        results = read_results(bootstrap, spec.name, until=2000, timeout=120, settle=1.0)
    assert count_by_id(results) == {rid: 1 for rid, _ in requests}
    for r in results:
        i = int(r.request_id[1:])
        assert r.error is None
        assert r.arrays["total"].tolist() == [12 * i + 5]  # 2(i+1) + (10i+3)
        assert r.arrays["parts"].tolist() == [2]


def test_outer_join_emits_what_arrived_after_the_window(
    bootstrap: str, pipeline_spec: Callable[[str], Path], running: Callable
) -> None:
    spec = load_spec(pipeline_spec(fan(join="outer", right="slow_right", window=1000)))
    with running(spec, bootstrap):
        held = importlib.import_module("dag_models").RELEASE
        held.clear()
        send_requests(bootstrap, spec.name, _xs(3))
        try:
            results = read_results(bootstrap, spec.name, until=3, timeout=60)
        finally:
            held.set()  # now the right branch answers: too late to change anything
        late = read_results(bootstrap, spec.name, until=4, timeout=6)
    assert count_by_id(results) == {"j0": 1, "j1": 1, "j2": 1}
    for r in results:
        i = int(r.request_id[1:])
        # The left branch only: the join did not wait for the slow right branch.
        assert r.arrays["total"].tolist() == [2 * (i + 1)]
        assert r.arrays["parts"].tolist() == [1]
    assert len(late) == 3


def test_any_join_emits_once(
    bootstrap: str, pipeline_spec: Callable[[str], Path], running: Callable
) -> None:
    spec = load_spec(pipeline_spec(fan(join="any", window=2000)))
    requests = _xs(200)
    with running(spec, bootstrap):
        send_requests(bootstrap, spec.name, requests)
        results = read_results(bootstrap, spec.name, until=200, timeout=60, settle=3.0)
    assert count_by_id(results) == {rid: 1 for rid, _ in requests}
    for r in results:
        i = int(r.request_id[1:])
        assert r.arrays["parts"].tolist() == [1]
        assert r.arrays["total"].tolist()[0] in (2 * (i + 1), 10 * i + 3)


def test_error_in_a_branch_answers_at_once_naming_the_step(
    bootstrap: str, pipeline_spec: Callable[[str], Path], running: Callable
) -> None:
    spec = load_spec(pipeline_spec(fan(right="failing_right", window=60_000)))
    with running(spec, bootstrap):
        send_requests(bootstrap, spec.name, _xs(10))
        # Well within the join's 60 s window.
        results = read_results(bootstrap, spec.name, until=10, timeout=30, settle=2.0)
    assert count_by_id(results) == {f"j{i}": 1 for i in range(10)}
    failed = {r.request_id: r for r in results if r.error is not None}
    assert list(failed) == ["j7"]  # b = 70
    error = failed["j7"].error
    assert error is not None and error.step == "right" and "cannot take 70" in error.message


ROUTED = """
name: "{name}"
partitions: 2
models:
  route: {runtime: python, handler: "dag_models:route", outputs: [x, even, odd]}
  even: {runtime: python, handler: "dag_models:mark_even", outputs: [kind]}
  odd: {runtime: python, handler: "dag_models:mark_odd", outputs: [kind]}
steps:
  - {name: route, model: route}
  - {name: even, model: even, inputs: [route.outputs.x], when: [route.outputs.even]}
  - {name: odd, model: odd, inputs: [route.outputs.x], when: [route.outputs.odd]}
output:
  steps: [even, odd]
  join: outer
  join_window_ms: 30000
"""


def test_trigger_routes_each_request_to_one_branch(
    bootstrap: str, pipeline_spec: Callable[[str], Path], running: Callable
) -> None:
    spec = load_spec(pipeline_spec(ROUTED))
    requests = _xs(300)
    with running(spec, bootstrap):
        send_requests(bootstrap, spec.name, requests)
        results = read_results(bootstrap, spec.name, until=300, timeout=60, settle=2.0)
    assert count_by_id(results) == {rid: 1 for rid, _ in requests}
    for r in results:
        i = int(r.request_id[1:])
        if i == 0:  # no branch takes 0: an empty answer, still exactly one
            assert r.arrays == {} and r.headers.get("streamdag-skipped") == b"1"
        else:
            assert r.arrays["kind"].tolist() == [b"even" if i % 2 == 0 else b"odd"]


@pytest.mark.slow
def test_sigkill_every_worker_of_a_join_pipeline(
    bootstrap: str, pipeline_spec: Callable[[str], Path], tmp_path: Path
) -> None:
    path = pipeline_spec(fan(left="slow_left"))
    spec = load_spec(path)
    ensure_topics(bootstrap, derive_topics(spec))
    requests = _xs(2000)
    send_requests(bootstrap, spec.name, requests)
    workers = Workers(path, bootstrap, tmp_path)
    try:
        first = [workers.start("--steps", "split,left"), workers.start("--steps", "right,both")]
        read_results(bootstrap, spec.name, until=300, timeout=60)
        for proc in first:
            workers.kill(proc)
        workers.start("--steps", "split,left")
        workers.start("--steps", "right,both")
        results = read_results(bootstrap, spec.name, until=2000, timeout=180, settle=3.0)
    finally:
        workers.stop_all()
    counts = count_by_id(results)
    assert set(counts) == {rid for rid, _ in requests}
    assert not {k: c for k, c in counts.items() if c > 1}, "duplicated results"
    for r in results:
        assert r.error is None, r.error
        assert r.arrays["total"].tolist() == [12 * int(r.request_id[1:]) + 5]
