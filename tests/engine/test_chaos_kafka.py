"""Real worker processes: SIGKILL mid-stream and restart, two processes sharing a step,
graceful SIGTERM, and the broker itself SIGKILLed and restarted under running workers.
Results are counted with a read_committed consumer."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from kafka_support import Result, Workers, count_by_id, read_results, send_requests

from streamdag.broker import BrokerInfo, LocalBroker, free_port
from streamdag.kafka import ensure_topics
from streamdag.pipeline import PipelineSpec, derive_topics, load_spec
from streamdag.protocol import inference_pb2, inference_pb2_grpc
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


def _wait_for_results(bootstrap: str, pipeline: str, at_least: int) -> None:
    results = read_results(bootstrap, pipeline, until=at_least, timeout=60)
    assert len(results) >= at_least, "the pipeline produced nothing before the kill"


def _chaos_backlog(
    bootstrap: str, pipeline_spec: Callable[[str], Path], guarantee: str
) -> tuple[Path, PipelineSpec, list[tuple[str, dict[str, np.ndarray]]]]:
    """The CHAOS pipeline's topics and 3,000 requests waiting on its inputs topic."""
    path = pipeline_spec(CHAOS.replace("GUARANTEE", guarantee))
    spec = load_spec(path)
    return path, spec, _send_backlog(bootstrap, spec)


def _send_backlog(bootstrap: str, spec: PipelineSpec) -> list[tuple[str, dict[str, np.ndarray]]]:
    ensure_topics(bootstrap, derive_topics(spec))
    requests = [(f"k{i}", {"x": np.array([[i, -i]], dtype=np.int64)}) for i in range(3000)]
    send_requests(bootstrap, spec.name, requests)
    return requests


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


def test_run_processes_replaces_a_killed_child_with_no_result_lost_or_doubled(
    bootstrap: str,
    pipeline_spec: Callable[[str], Path],
    workers: Callable[[Path], Workers],
) -> None:
    """`run --processes 2`: two children share the steps; one SIGKILLed mid-stream is
    restarted by the parent, every result arrives exactly once, and SIGTERM to the parent
    stops them all cleanly."""
    path, spec, requests = _chaos_backlog(bootstrap, pipeline_spec, "exactly_once")
    w = workers(path)
    parent = w.start("--processes", "2", "--instance-id", "proc")
    log = w.wait_for_log(parent, "worker process 1 started: pid ")
    _wait_for_results(bootstrap, spec.name, 200)
    found = re.search(r"worker process 0 started: pid (\d+)", log)
    assert found is not None
    os.kill(int(found.group(1)), signal.SIGKILL)
    w.wait_for_log(parent, "died of SIGKILL; restarting it")
    results = read_results(bootstrap, spec.name, until=len(requests), timeout=120, settle=3.0)
    _assert_every_result(results, requests, "exactly_once")
    assert w.terminate(parent) == 0


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
    # How long the step's commits take, a part of every hop's latency.
    commits = f'streamdag_commit_seconds_count{{pipeline="{spec.name}",step="double"}}'
    committed = 0.0
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            for line in page.read().decode().splitlines():
                if line.startswith(commits):
                    committed += float(line.split()[-1])
    assert committed >= 1
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


GUARANTEES = ("exactly_once", "at_least_once")


def _one_of_each(pipeline_spec: Callable[[str], Path], text: str) -> dict[str, Path]:
    """``text`` as two pipelines, one per guarantee, each in a file of its own."""
    paths = {}
    for guarantee in GUARANTEES:
        path = pipeline_spec(text.replace("GUARANTEE", guarantee))
        paths[guarantee] = path.rename(path.with_name(f"{guarantee}.yaml"))
    return paths


def test_workers_ride_out_a_broker_killed_mid_stream(
    own_broker: tuple[LocalBroker, BrokerInfo],
    pipeline_spec: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    """SIGKILL of the broker itself while the workers of two pipelines (one per
    guarantee) run, then a restart on the same port and data: the same worker processes
    carry on, and every request gets its result (once, with exactly_once)."""
    broker, info = own_broker
    bootstrap = info.bootstrap
    paths = _one_of_each(pipeline_spec, CHAOS)
    backlogs = {}
    for guarantee, path in paths.items():
        spec = load_spec(path)
        backlogs[guarantee] = (spec, _send_backlog(bootstrap, spec))
    pools = {g: Workers(path, bootstrap, tmp_path / g) for g, path in paths.items()}
    try:
        procs = []
        for pool in pools.values():
            procs += [pool.start("--steps", "double"), pool.start("--steps", "plus-one")]
        for spec, _ in backlogs.values():
            _wait_for_results(bootstrap, spec.name, 200)
        os.kill(info.pid, signal.SIGKILL)
        time.sleep(3)  # the workers see the broker gone
        broker.start(port=info.port, timeout=90)

        results = {
            g: read_results(bootstrap, spec.name, until=len(requests), timeout=180, settle=3.0)
            for g, (spec, requests) in backlogs.items()
        }
        assert all(p.poll() is None for p in procs), "\n".join(
            pool.logs()[-3000:] for pool in pools.values()
        )
    finally:
        for pool in pools.values():
            pool.stop_all()
    for guarantee, (_, requests) in backlogs.items():
        _assert_every_result(results[guarantee], requests, guarantee)


IDLE = """
name: "{name}"
guarantee: GUARANTEE
partitions: 2
models:
  scale: {runtime: python, handler: "linear_models:scale", outputs: [y]}
  shift: {runtime: python, handler: "linear_models:shift", outputs: [w]}
steps:
  - {name: double, model: scale}
  - name: plus-one
    model: shift
    inputs: [double.outputs.y]
    tensor_map: {double.outputs.y: v}
"""

OUTAGE_S = 18  # how long the broker stays away
HEAL_S = 20  # answers again within this long of its return
NOTICE_S = 6  # the gateway says it is not ready within this long of the broker's death


def test_pipelines_answer_again_soon_after_the_broker_returns(
    own_broker: tuple[LocalBroker, BrokerInfo],
    pipeline_spec: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    """The broker SIGKILLed for 18 s under two idle pipelines (one per guarantee, each
    with a ``streamdag run`` process) and a gateway for both (``streamdag serve``), then
    restarted on the same port and data. While it is away the server stays live but says
    it is not ready, and turns pipeline requests away at once; within 20 s of its return
    both pipelines answer again, through the same processes. (librdkafka's re-bootstrap
    after the outage used to leave a transactional producer waiting forever in
    send_offsets_to_transaction, librdkafka#5511; each step of an exactly_once pipeline
    then lost 15 s before giving its producer up.)"""
    broker, info = own_broker
    paths = _one_of_each(pipeline_spec, IDLE)
    specs = {g: load_spec(path) for g, path in paths.items()}
    names = {g: spec.name for g, spec in specs.items()}
    for spec in specs.values():
        ensure_topics(info.bootstrap, derive_topics(spec))
    w = Workers(paths["exactly_once"], info.bootstrap, tmp_path)
    http_port, grpc_port = free_port(), free_port()
    base = f"http://127.0.0.1:{http_port}"
    asked: dict[str, dict[str, int]] = {g: {} for g in GUARANTEES}  # request id -> status

    def ask(guarantee: str, x: int, timeout_s: float) -> int:
        """The status of one request through a pipeline, 0 if the server did not answer."""
        rid = f"ask-{x}"
        body = {
            "id": rid,
            "inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [x]}],
            "parameters": {"timeout": int(timeout_s * 1_000_000)},
        }
        asked[guarantee][rid] = 0
        try:
            answer = httpx.post(
                f"{base}/v2/pipelines/{names[guarantee]}/infer", json=body, timeout=timeout_s + 5
            )
        except httpx.HTTPError:
            return 0
        if answer.status_code == 200:
            assert answer.json()["outputs"][0]["data"] == [2 * x + 1]
        asked[guarantee][rid] = answer.status_code
        return answer.status_code

    def health(what: str) -> int:
        try:
            return httpx.get(f"{base}/v2/health/{what}", timeout=2).status_code
        except httpx.HTTPError:
            return 0

    try:
        workers = [w.start(), w.start(spec=paths["at_least_once"])]
        server = w.start(
            str(paths["at_least_once"]),
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(grpc_port),
            command="serve",
        )
        deadline = time.monotonic() + 90
        for guarantee in GUARANTEES:
            while ask(guarantee, len(asked[guarantee]), 5) != 200:
                assert time.monotonic() < deadline and server.poll() is None, w.logs()[-3000:]
                time.sleep(0.5)
        assert health("ready") == 200

        os.kill(info.pid, signal.SIGKILL)
        killed = time.monotonic()
        seen: list[tuple[float, int, int]] = []  # (seconds since the kill, ready, live)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
            while time.monotonic() - killed < NOTICE_S and health("ready") == 200:
                time.sleep(0.2)
            assert health("ready") == 400, f"still ready {NOTICE_S} s after the broker died"
            assert not stub.ServerReady(inference_pb2.ServerReadyRequest()).ready
            for guarantee in GUARANTEES:  # turned away at once, not left to time out
                assert ask(guarantee, 500, 10) == 503, guarantee
            while time.monotonic() - killed < OUTAGE_S:
                seen.append((time.monotonic() - killed, health("ready"), health("live")))
                time.sleep(0.5)
        assert {ready for _, ready, _ in seen} == {400}, seen
        assert {live for _, _, live in seen} == {200}, seen

        broker.start(port=info.port, timeout=90)
        back = time.monotonic()
        healed: dict[str, float] = {}
        statuses: dict[str, list[int]] = {g: [] for g in GUARANTEES}
        while time.monotonic() - back < 120 and len(healed) < len(GUARANTEES):
            for guarantee in set(GUARANTEES) - set(healed):
                statuses[guarantee].append(ask(guarantee, 1000 + len(statuses[guarantee]), 2))
                if statuses[guarantee][-1] == 200:
                    healed[guarantee] = time.monotonic() - back
            if len(healed) < len(GUARANTEES):
                time.sleep(0.2)
        for guarantee in GUARANTEES:
            took = healed.get(guarantee, float("inf"))
            assert took <= HEAL_S, f"{guarantee}: answered {took:.0f} s after the broker's return"
        assert health("ready") == 200
        for guarantee in GUARANTEES:
            assert ask(guarantee, 5000, 30) == 200, guarantee
        assert all(p.poll() is None for p in [*workers, server]), w.logs()[-3000:]
        # The outage shows in the logs, in librdkafka's own words and the gateway's.
        for worker in workers:
            assert "streamdag.kafka.librdkafka: FAIL" in w.log_of(worker)
        assert "gateway: Kafka does not answer" in w.log_of(server)

        # A request the gateway took but did not see answered in time is answered later
        # (once, with exactly_once); one it turned away (503) never runs.
        for guarantee in GUARANTEES:
            taken = {rid for rid, status in asked[guarantee].items() if status in (200, 504)}
            results = read_results(
                info.bootstrap, names[guarantee], until=len(taken), timeout=30, settle=1
            )
            counts = count_by_id(results)
            assert taken <= set(counts), f"{guarantee} never answered: {taken - set(counts)}"
            assert not [rid for rid in counts if asked[guarantee][rid] == 503], guarantee
            if guarantee == "exactly_once":
                assert {rid: n for rid, n in counts.items() if n > 1} == {}
    finally:
        w.stop_all()
