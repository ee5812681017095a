"""A replicated 3-node cluster (RF 3, min ISR 2) under broker failures: the broker that
leads most of a pipeline's partitions, or the transaction coordinator's, SIGKILLed
mid-stream and restarted 10 s later; a rolling restart of all three under load. An
independent read_committed consumer finds every request exactly once (exactly_once) or
at least once (at_least_once), with the right value; callers of the gateway during a
kill each get an answer."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from confluent_kafka.admin import AdminClient
from kafka_support import Workers, count_by_id, read_results, send_requests
from server_support import running_server

from streamdag.broker import ClusterInfo, LocalCluster, free_port_run
from streamdag.kafka import ensure_topics
from streamdag.pipeline import PipelineSpec, compile_plan, derive_topics, load_spec
from streamdag.serving import KafkaGateway
from streamdag.settings import get_settings

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

THREE_STEPS = """
name: "{name}"
guarantee: GUARANTEE
partitions: 6
models:
  scale: {runtime: python, handler: "linear_models:slow_scale", outputs: [y],
          batch: {max_size: 16, max_wait_ms: 5}}
  shift: {runtime: python, handler: "linear_models:shift", outputs: [w]}
  again: {runtime: python, handler: "linear_models:scale", outputs: [y]}
steps:
  - {name: double, model: scale}
  - name: plus-one
    model: shift
    inputs: [double.outputs.y]
    tensor_map: {double.outputs.y: v}
  - name: twice
    model: again
    inputs: [plus-one.outputs.w]
    tensor_map: {plus-one.outputs.w: x}
"""
REQUESTS = 5_000
INSTANCE = "w1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, ClusterInfo]]:
    settings = get_settings()
    local = LocalCluster(
        tmp_path_factory.mktemp("cluster"), libs_dir=settings.kafka_libs, heap="384m"
    )
    info = local.start(nodes=3, port=free_port_run(3), timeout=120)
    try:
        yield local, info
    finally:
        local.stop()


def _backlog(
    bootstrap: str, pipeline_spec: Callable[[str], Path], guarantee: str, prefix: str = "k"
) -> tuple[Path, PipelineSpec]:
    path = pipeline_spec(THREE_STEPS.replace("GUARANTEE", guarantee))
    spec = load_spec(path)
    ensure_topics(bootstrap, derive_topics(spec))
    send_requests(
        bootstrap,
        spec.name,
        ((f"{prefix}{i}", {"x": np.array([[i, -i]], dtype=np.int64)}) for i in range(REQUESTS)),
    )
    return path, spec


def _assert_every_result(bootstrap: str, spec: PipelineSpec, *, once: bool) -> None:
    """The backlog's results (ids k0..), read read_committed until each came, then 3 s
    more for duplicates; results of gateway calls (ids g0..) are checked by their caller."""
    wanted = {f"k{i}" for i in range(REQUESTS)}
    results = [
        r
        for r in read_results(bootstrap, spec.name, keys=wanted, timeout=180, settle=3)
        if r.request_id.startswith("k")
    ]
    counts = count_by_id(results)
    assert len(counts) == REQUESTS, f"{REQUESTS - len(counts)} requests lost"
    if once:
        twice = {k: c for k, c in counts.items() if c > 1}
        assert not twice, f"{len(twice)} requests answered more than once"
    for r in results:
        assert r.error is None, r.error
        i = int(r.request_id[1:])
        assert r.arrays["y"].tolist() == [[4 * i + 2, -4 * i + 2]], r.request_id


def _leaders(bootstrap: str, topics: list[str]) -> Counter[int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30)
    return Counter(
        p.leader for t in topics for p in metadata.topics[t].partitions.values() if p.leader >= 0
    )


def _java_hash(text: str) -> int:
    value = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        value = (31 * value + int(unit, 16)) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _coordinator(bootstrap: str, transactional_id: str) -> int:
    """The broker leading the __transaction_state partition of ``transactional_id``, as
    Kafka's TransactionStateManager.partitionFor picks it."""
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30)
    partitions = metadata.topics["__transaction_state"].partitions
    code = _java_hash(transactional_id)
    index = (0 if code == -(1 << 31) else abs(code)) % len(partitions)
    return int(partitions[index].leader)


def _kill_and_restart(local: LocalCluster, node: int, down_s: float = 10.0) -> None:
    local.kill_node(node)
    time.sleep(down_s)
    local.start_node(node, timeout=120)


@pytest.mark.parametrize("target", ["partition-leader", "transaction-coordinator"])
def test_exactly_once_while_a_broker_dies_mid_stream(
    target: str,
    cluster: tuple[LocalCluster, ClusterInfo],
    pipeline_spec: Callable[[str], Path],
    workers: Callable[..., Workers],
) -> None:
    local, info = cluster
    bootstrap = info.bootstrap
    path, spec = _backlog(bootstrap, pipeline_spec, "exactly_once")
    w = workers(path, bootstrap)
    w.start("--instance-id", INSTANCE)
    read_results(bootstrap, spec.name, until=500, timeout=120)
    if target == "partition-leader":
        topics = [t.name for t in derive_topics(spec) if "join-state" not in t.name]
        victim = _leaders(bootstrap, topics).most_common(1)[0][0]
    else:
        victim = _coordinator(bootstrap, f"streamdag.{spec.name}.double.{INSTANCE}")

    answers: list[int] = []
    sent: list[str] = []
    with running_server([spec], gateway=KafkaGateway([compile_plan(spec)], bootstrap)) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"
        stop = threading.Event()

        def call(i: int) -> int:
            body = {
                "id": f"g{i}",
                "parameters": {"timeout": 8_000_000},
                "inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [i, -i]}],
            }
            response = httpx.post(url, json=body, timeout=30)
            if response.status_code == 200:
                assert response.json()["outputs"][0]["data"] == [4 * i + 2, -4 * i + 2]
            return response.status_code

        def load() -> None:
            with ThreadPoolExecutor(4) as pool:
                futures = []
                i = 0
                while not stop.is_set():
                    sent.append(f"g{i}")
                    futures.append(pool.submit(call, i))
                    i += 1
                    time.sleep(0.1)
                answers.extend(f.result() for f in futures)

        caller = threading.Thread(target=load)
        caller.start()
        try:
            _kill_and_restart(local, victim)
        finally:
            time.sleep(2)
            stop.set()
            caller.join(120)
    _assert_every_result(bootstrap, spec, once=True)
    # Every caller got an answer: a result, or a clear 503/504 for a reply not had in time.
    assert len(answers) == len(sent) > 0
    assert set(answers) <= {200, 503, 504}, Counter(answers)
    assert answers.count(200) > 0


def test_a_rolling_restart_under_load_loses_nothing(
    cluster: tuple[LocalCluster, ClusterInfo],
    pipeline_spec: Callable[[str], Path],
    tmp_path: Path,
    workers: Callable[..., Workers],
) -> None:
    """Both guarantees at once: one pipeline each, the same three restarts."""
    local, info = cluster
    bootstrap = info.bootstrap
    exactly_path, exactly = _backlog(bootstrap, pipeline_spec, "exactly_once")
    # A second spec beside the first: its own name, the same handlers.
    least_path = exactly_path.with_name("least.yaml")
    least_path.write_text(
        exactly_path.read_text()
        .replace("exactly_once", "at_least_once")
        .replace(exactly.name, exactly.name + "-alo")
    )
    least = load_spec(least_path)
    ensure_topics(bootstrap, derive_topics(least))
    send_requests(
        bootstrap,
        least.name,
        ((f"k{i}", {"x": np.array([[i, -i]], dtype=np.int64)}) for i in range(REQUESTS)),
    )
    workers(exactly_path, bootstrap).start("--instance-id", INSTANCE)
    workers(least_path, bootstrap).start("--instance-id", INSTANCE)
    read_results(bootstrap, exactly.name, until=300, timeout=120)
    for node in info.nodes:
        current = local.status()
        assert current is not None
        pid = current.node(node.id).pid
        assert pid is not None
        os.kill(pid, signal.SIGTERM)  # a clean shutdown, as a rolling restart does
        deadline = time.monotonic() + 60
        while _running(local, node.id) and time.monotonic() < deadline:
            time.sleep(0.2)
        local.start_node(node.id, timeout=120)
        time.sleep(3)  # let its replicas catch up before the next one goes
    _assert_every_result(bootstrap, exactly, once=True)
    _assert_every_result(bootstrap, least, once=False)


def _running(local: LocalCluster, node_id: int) -> bool:
    status = local.status()
    return status is not None and status.node(node_id).running
