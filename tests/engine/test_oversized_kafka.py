"""A result that no Kafka record can hold is a failure of its own request: an error reply
naming the size and the limit, an errors-topic record, and the partition moves on; also
under exactly_once with the worker SIGKILLed, and for join state that outgrows a record."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from kafka_support import Workers, count_by_id, read_results, read_topic, send_requests
from server_support import running_server

from streamdag.kafka import MESSAGE_MAX_BYTES, ensure_topics
from streamdag.kafka.headers import ERROR, ErrorInfo, get_header
from streamdag.pipeline import compile_plan, derive_topics, load_spec
from streamdag.serving import KafkaGateway

pytestmark = pytest.mark.kafka

GROWS = """
name: "{name}"
guarantee: GUARANTEE
partitions: 2
models:
  grow: {runtime: python, handler: "linear_models:grows_on_seven", outputs: [y],
         batch: {max_size: 1}}
  shift: {runtime: python, handler: "linear_models:shift", outputs: [w]}
steps:
  - {name: grow, model: grow}
  - name: plus-one
    model: shift
    inputs: [grow.outputs.y]
    tensor_map: {grow.outputs.y: v}
"""

JOINED = """
name: "{name}"
partitions: 1
models:
  half: {runtime: python, handler: "linear_models:half_mega_on_five", outputs: [y],
         batch: {max_size: 1}}
  shift: {runtime: python, handler: "linear_models:shift", outputs: [w]}
steps:
  - {name: left, model: half}
  - {name: right, model: half}
  - {name: middle, model: half}
  - name: both
    model: shift
    inputs: [left.outputs.y, right.outputs.y, middle.outputs.y]
    tensor_map: {left.outputs.y: v, right.outputs.y: u, middle.outputs.y: t}
    join: inner
"""


def _requests(count: int) -> list[tuple[str, dict[str, np.ndarray]]]:
    return [(f"k{i}", {"x": np.array([[i % 10]], dtype=np.int64)}) for i in range(count)]


def _assert_answers(results: list[Any], count: int, *, once: bool) -> None:
    """Every request answered: a 7 with an error naming size and limit, the rest right."""
    counts = count_by_id(results)
    assert set(counts) == {f"k{i}" for i in range(count)}
    if once:
        assert max(counts.values()) == 1
    for r in results:
        if int(r.request_id[1:]) % 10 == 7:
            assert r.error is not None, r.request_id
            assert r.error.code == "resource_exhausted"
            assert r.error.step == "grow"
            assert f"over the {MESSAGE_MAX_BYTES:,}-byte limit of a Kafka record" in (
                r.error.message
            )
            assert "the result is 1,2" in r.error.message
        else:
            assert r.error is None, r.error
            assert r.arrays["w"].tolist() == [[2 * (int(r.request_id[1:]) % 10) + 1]]


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_an_oversized_result_fails_alone_and_its_partition_moves_on(
    guarantee: str, bootstrap: str, pipeline_spec: Callable[[str], Path], running: Any
) -> None:
    path = pipeline_spec(GROWS.replace("GUARANTEE", guarantee))
    spec = load_spec(path)
    ensure_topics(bootstrap, derive_topics(spec))
    send_requests(bootstrap, spec.name, _requests(40))
    with running(spec, bootstrap):
        results = read_results(bootstrap, spec.name, until=40, timeout=60, settle=1.0)
    _assert_answers(results, 40, once=True)
    failed = read_topic(bootstrap, f"streamdag.{spec.name}.errors", until=4, settle=1.0)
    assert sorted((key or b"").decode() for key, _, _ in failed) == ["k17", "k27", "k37", "k7"]
    for _, value, headers in failed:
        assert len(value) < 1000  # the request as it arrived, not the oversized result
        assert ErrorInfo.decode(get_header(headers, ERROR) or "").code == "resource_exhausted"


def test_oversized_results_under_a_worker_sigkill_are_answered_exactly_once(
    bootstrap: str, pipeline_spec: Callable[[str], Path], workers: Callable[[Path], Workers]
) -> None:
    path = pipeline_spec(GROWS.replace("GUARANTEE", "exactly_once"))
    spec = load_spec(path)
    ensure_topics(bootstrap, derive_topics(spec))
    count = 400
    send_requests(bootstrap, spec.name, _requests(count))
    w = workers(path)
    first = w.start()
    read_results(bootstrap, spec.name, until=20, timeout=60)
    w.kill(first)  # SIGKILL mid-stream
    w.start()
    results = read_results(bootstrap, spec.name, until=count, timeout=120, settle=3.0)
    _assert_answers(results, count, once=True)
    assert "batch will be redone" not in w.logs()


def test_a_step_returning_too_much_answers_its_caller_at_once(
    bootstrap: str, pipeline_spec: Callable[[str], Path], running: Any
) -> None:
    spec = load_spec(pipeline_spec(GROWS.replace("GUARANTEE", "exactly_once")))
    with (
        running(spec, bootstrap),
        running_server([spec], gateway=KafkaGateway([compile_plan(spec)], bootstrap)) as server,
    ):
        url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"

        def ask(rid: str, x: int) -> httpx.Response:
            data = {
                "id": rid,
                "inputs": [{"name": "x", "shape": [1, 1], "datatype": "INT64", "data": [x]}],
            }
            return httpx.post(url, json=data, timeout=30)

        started = time.monotonic()
        big = ask("big-1", 7)
        took = time.monotonic() - started
        after = ask("small-1", 3)
    assert big.status_code == 413
    assert "step grow: the result is 1,2" in big.json()["error"]
    assert took < 10  # answered by the error reply, not by the 30 s timeout
    assert after.status_code == 200 and after.json()["outputs"][0]["data"] == [7]


def test_join_state_that_outgrows_a_record_fails_the_request(
    bootstrap: str, pipeline_spec: Callable[[str], Path], running: Any
) -> None:
    """600 KB pieces fit a record each, but two waiting for the third do not fit one
    changelog record together."""
    spec = load_spec(pipeline_spec(JOINED))
    ensure_topics(bootstrap, derive_topics(spec))
    send_requests(
        bootstrap,
        spec.name,
        [(f"j{i}", {"x": np.array([[i]], dtype=np.int64)}) for i in range(4, 8)],
    )
    with running(spec, bootstrap):
        results = read_results(bootstrap, spec.name, until=4, timeout=60, settle=1.0)
    by_id = {r.request_id: r for r in results}
    assert sorted(by_id) == ["j4", "j5", "j6", "j7"]
    failed = by_id["j5"].error
    assert failed is not None and failed.code == "resource_exhausted"
    assert failed.step == "both" and "bytes of join state" in failed.message
    assert by_id["j6"].arrays["w"].tolist() == [[13]]
