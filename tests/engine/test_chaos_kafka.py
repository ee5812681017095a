"""Real worker processes: SIGKILL mid-stream and restart, two processes sharing a step,
graceful SIGTERM, and the broker itself SIGKILLed and restarted under running workers.
Results are counted with a read_committed consumer."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from kafka_support import Result, Workers, count_by_id, read_results, send_requests
from server_support import running_server

from streamdag.broker import BrokerInfo, LocalBroker, free_port
from streamdag.kafka import ensure_topics
from streamdag.pipeline import PipelineSpec, derive_topics, load_spec
from streamdag.serving import KafkaGateway
from streamdag.settings import get_settings

pytestmark = pytest.mark.slow

CHAOS = """
name: "{name}"
guarantee: GUARANTEE
partitions: 4
models:
  scale: {runtime: python, handler: "linear_models:slow_scale", outputs: [y],
          batch: {max_size: 16, max_wait_ms: 5}}
  shift: {runtime: python, handler: "linear_models:shift", outputs: [w]}
steps:
  - {name: double, model: scale}
  - name: plus-one
    model: shift
    inputs: [double.outputs.y]
    tensor_map: {double.outputs.y: v}
"""


@pytest.fixture
def workers(tmp_path: Path, bootstrap: str) -> Callable[[Path], Workers]:
    made: list[Workers] = []

    def make(spec: Path) -> Workers:
        w = Workers(spec, bootstrap, tmp_path)
        made.append(w)
        return w

    yield make  # type: ignore[misc]
    for w in made:
        w.stop_all()


def _wait_for_results(bootstrap: str, pipeline: str, at_least: int) -> None:
    results = read_results(bootstrap, pipeline, until=at_least, timeout=60)
    assert len(results) >= at_least, "the pipeline produced nothing before the kill"


def _chaos_backlog(
    bootstrap: str, pipeline_spec: Callable[[str], Path], guarantee: str
) -> tuple[Path, PipelineSpec, list[tuple[str, dict[str, np.ndarray]]]]:
    """The CHAOS pipeline's topics and 3,000 requests waiting on its inputs topic."""
    path = pipeline_spec(CHAOS.replace("GUARANTEE", guarantee))
    spec = load_spec(path)
    ensure_topics(bootstrap, derive_topics(spec))
    requests = [(f"k{i}", {"x": np.array([[i, -i]], dtype=np.int64)}) for i in range(3000)]
    send_requests(bootstrap, spec.name, requests)
    return path, spec, requests


def _assert_every_result(
    results: list[Result], requests: list[tuple[str, dict[str, np.ndarray]]], guarantee: str
) -> None:
    """Every request answered with the right value; with exactly_once, once."""
    counts = count_by_id(results)
    missing = len(requests) - len(counts)
    assert set(counts) == {rid for rid, _ in requests}, f"missing {missing}"
    if guarantee == "exactly_once":
        duplicates = {k: c for k, c in counts.items() if c > 1}
        assert not duplicates, f"{len(duplicates)} duplicated results"
    for r in results:
        i = int(r.request_id[1:])
        assert r.arrays["w"].tolist() == [[2 * i + 1, -2 * i + 1]]


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_sigkill_mid_stream_then_restart(
    guarantee: str,
    bootstrap: str,
    pipeline_spec: Callable[[str], Path],
    workers: Callable[[Path], Workers],
) -> None:
    path, spec, requests = _chaos_backlog(bootstrap, pipeline_spec, guarantee)

    w = workers(path)
    first = [w.start("--steps", "double"), w.start("--steps", "plus-one")]
    _wait_for_results(bootstrap, spec.name, 200)
    for proc in first:
        w.kill(proc)  # SIGKILL: no chance to finish or commit anything
    w.start("--steps", "double")
    w.start("--steps", "plus-one")

    results = read_results(bootstrap, spec.name, until=len(requests), timeout=120, settle=3.0)
    _assert_every_result(results, requests, guarantee)


SHARED = """
name: "{name}"
partitions: 4
models:
  scale: {runtime: python, handler: "linear_models:slow_scale", outputs: [y],
          batch: {max_size: 8, max_wait_ms: 5}}
steps:
  - {name: double, model: scale}
"""


def test_two_processes_share_a_step_and_hand_over_on_stop(
    bootstrap: str,
    pipeline_spec: Callable[[str], Path],
    workers: Callable[[Path], Workers],
) -> None:
    path = pipeline_spec(SHARED)
    spec = load_spec(path)
    ensure_topics(bootstrap, derive_topics(spec))
    w = workers(path)
    ports = [free_port(), free_port()]
    one = w.start("--metrics-port", str(ports[0]))
    two = w.start("--metrics-port", str(ports[1]))
    n = 1500
    requests = [(f"s{i}", {"x": np.array([i], dtype=np.int64)}) for i in range(n)]
    send_requests(bootstrap, spec.name, requests)
    # Both processes hold partitions of the step.
    w.wait_for_log(one, f"assigned streamdag.{spec.name}.inputs")
    w.wait_for_log(two, f"assigned streamdag.{spec.name}.inputs")
    _wait_for_results(bootstrap, spec.name, 300)

    series = f'streamdag_records_in_total{{pipeline="{spec.name}",step="double"}}'
    consumed = 0.0
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            for line in page.read().decode().splitlines():
                if line.startswith(series):
                    consumed += float(line.split()[-1])
    assert consumed >= 300
    # Each worker's loop shows it is turning, for liveness alerts.
    beat = f'streamdag_worker_last_loop_timestamp_seconds{{pipeline="{spec.name}",step="double"}}'
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            stamps = [
                float(line.split()[-1])
                for line in page.read().decode().splitlines()
                if line.startswith(beat)
            ]
        assert len(stamps) == 1 and time.time() - stamps[0] < 10

    assert w.terminate(one) == 0  # SIGTERM: finish the batch, commit, leave the group
    results = read_results(bootstrap, spec.name, until=len(requests), timeout=120, settle=2.0)
    assert count_by_id(results) == {rid: 1 for rid, _ in requests}
    assert all(r.arrays["y"].tolist() == [2 * int(r.request_id[1:])] for r in results)

    assert "worker stop: pipeline" in w.log_of(one)
    # The survivor took over all four partitions of the leaver's and its own.
    handover = w.log_of(two).split("rebalance: step=double assigned")
    held = {part for chunk in handover[1:] for part in chunk.split("\n")[0].split(",")}
    assert {p.strip() for p in held if "inputs" in p} == {
        f"streamdag.{spec.name}.inputs[{i}]" for i in range(4)
    }
    assert two.poll() is None


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[LocalBroker, BrokerInfo]]:
    """A broker of this test's own, to kill and restart on the same port and data."""
    broker = LocalBroker(tmp_path / "kafka", libs_dir=get_settings().kafka_libs)
    info = broker.start(port=free_port())
    yield broker, info
    if broker.status() is not None:
        broker.stop()


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_workers_ride_out_a_broker_killed_mid_stream(
    guarantee: str,
    own_broker: tuple[LocalBroker, BrokerInfo],
    pipeline_spec: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    """SIGKILL of the broker itself while the workers run, then a restart on the same port
    and data: the same worker processes carry on, and every request gets its result (once,
    with exactly_once)."""
    broker, info = own_broker
    bootstrap = info.bootstrap
    path, spec, requests = _chaos_backlog(bootstrap, pipeline_spec, guarantee)

    w = Workers(path, bootstrap, tmp_path)
    try:
        procs = [w.start("--steps", "double"), w.start("--steps", "plus-one")]
        _wait_for_results(bootstrap, spec.name, 200)
        os.kill(info.pid, signal.SIGKILL)
        time.sleep(3)  # the workers see the broker gone
        broker.start(port=info.port, timeout=90)

        results = read_results(bootstrap, spec.name, until=len(requests), timeout=180, settle=3.0)
        assert all(p.poll() is None for p in procs), w.logs()[-3000:]
    finally:
        w.stop_all()
    _assert_every_result(results, requests, guarantee)


IDLE = """
name: "{name}"
guarantee: GUARANTEE
partitions: 2
models:
  scale: {runtime: python, handler: "linear_models:scale", outputs: [y]}
steps:
  - {name: double, model: scale}
"""


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_an_idle_pipeline_answers_again_after_the_broker_restarts(
    guarantee: str,
    own_broker: tuple[LocalBroker, BrokerInfo],
    pipeline_spec: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    """The broker SIGKILLed and restarted while a worker and a gateway wait for work: the
    next requests are answered, by the same processes. (A transactional producer whose
    group coordinator went away can block in send_offsets_to_transaction past its timeout,
    librdkafka#5456; the worker gives such a producer up for a new one.)"""
    broker, info = own_broker
    path = pipeline_spec(IDLE.replace("GUARANTEE", guarantee))
    spec = load_spec(path)
    ensure_topics(info.bootstrap, derive_topics(spec))
    w = Workers(path, info.bootstrap, tmp_path)
    try:
        worker = w.start()
        with running_server([spec], gateway=KafkaGateway([spec], info.bootstrap)) as server:
            url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"

            def ask(x: int, timeout_s: float) -> httpx.Response:
                body = {
                    "inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [x]}],
                    "parameters": {"timeout": int(timeout_s * 1_000_000)},
                }
                return httpx.post(url, json=body, timeout=timeout_s + 10)

            assert ask(1, 60).json()["outputs"][0]["data"] == [2]
            os.kill(info.pid, signal.SIGKILL)
            time.sleep(2)  # the JVM is gone before its port is taken again
            broker.start(port=info.port, timeout=90)

            deadline = time.monotonic() + 120
            answers: list[int] = []
            while time.monotonic() < deadline:
                answer = ask(7, 10)
                answers.append(answer.status_code)
                if answer.status_code == 200:
                    assert answer.json()["outputs"][0]["data"] == [14]
                    break
                time.sleep(1)
            assert answers[-1] == 200, f"statuses after the restart: {answers}"
            assert ask(8, 30).json()["outputs"][0]["data"] == [16]
        assert worker.poll() is None, w.logs()[-3000:]
        # The outage shows in the worker's log, in librdkafka's own words.
        assert "streamdag.kafka.librdkafka: FAIL" in w.logs()
    finally:
        w.stop_all()
