"""A local 3-node KRaft cluster against real Apache Kafka: start, replication, a killed
leader, a node brought back, stop. One cluster for the module (three JVMs)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from streamdag.broker import ClusterInfo, LocalCluster, free_port_run
from streamdag.kafka import TopicSpec, ensure_topics
from streamdag.settings import get_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

QUIET: dict[str, Any] = {"log_level": 0, "logger": lambda *_: None}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, ClusterInfo]]:
    local = LocalCluster(tmp_path_factory.mktemp("cluster"), libs_dir=get_settings().kafka_libs)
    info = local.start(nodes=3, port=free_port_run(3), timeout=120)
    try:
        yield local, info
    finally:
        status = local.status()
        if status is not None and any(node.running for node in status.nodes):
            local.stop()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamdag.cli.main", "broker", *args],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **QUIET})


def _partition(bootstrap: str, topic: str, timeout: float = 10.0) -> Any:
    """Partition 0 of ``topic`` as the cluster's metadata has it; a topic created a moment
    ago can be listed by a broker before its partitions are (they come in a while)."""
    deadline = time.monotonic() + timeout
    while True:
        partitions = _admin(bootstrap).list_topics(topic, timeout=10).topics[topic].partitions
        if 0 in partitions or time.monotonic() > deadline:
            return partitions[0]
        time.sleep(0.2)


def test_status_json_lists_three_running_nodes(cluster: tuple[LocalCluster, ClusterInfo]) -> None:
    local, info = cluster
    result = _cli("status", "--json", "--data-dir", str(local.data_dir))
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    first = info.nodes[0].port
    assert status["running"] is True
    assert status["bootstrap"] == ",".join(f"127.0.0.1:{first + i}" for i in range(3))
    assert [(n["id"], n["port"], n["running"]) for n in status["nodes"]] == [
        (1, first, True),
        (2, first + 1, True),
        (3, first + 2, True),
    ]
    assert len({n["pid"] for n in status["nodes"]}) == 3
    assert sorted(_admin(info.bootstrap).list_topics(timeout=10).brokers) == [1, 2, 3]
    for i in (1, 2, 3):
        assert (local.data_dir / f"node-{i}" / "kraft" / "meta.properties").exists()


def test_topics_get_three_replicas_and_need_two_in_sync(
    cluster: tuple[LocalCluster, ClusterInfo],
) -> None:
    _, info = cluster
    topic = f"rf-{uuid.uuid4().hex[:8]}"
    ensure_topics(info.bootstrap, [TopicSpec(topic, 1)])
    assert len(_partition(info.bootstrap, topic).replicas) == 3
    assert len(_partition(info.bootstrap, "__consumer_offsets").replicas) == 3
    resource = ConfigResource("topic", topic)
    admin = _admin(info.bootstrap)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["min.insync.replicas"].value == "2"


def test_an_acked_record_survives_sigkill_of_its_leader_who_then_rejoins(
    cluster: tuple[LocalCluster, ClusterInfo],
) -> None:
    local, info = cluster
    topic = f"kill-{uuid.uuid4().hex[:8]}"
    ensure_topics(info.bootstrap, [TopicSpec(topic, 1)])
    producer = Producer({"bootstrap.servers": info.bootstrap, "acks": "all", **QUIET})
    producer.produce(topic, b"before")
    assert producer.flush(15) == 0

    leader = _partition(info.bootstrap, topic).leader
    killed = local.kill_node(leader)
    assert killed.id == leader
    status = local.status()
    assert status is not None
    assert [n.id for n in status.nodes if not n.running] == [leader]

    # Two of three replicas remain: min.insync.replicas=2 still accepts acks=all writes.
    producer.produce(topic, b"while-down")
    assert producer.flush(30) == 0
    consumer = Consumer(
        {"bootstrap.servers": info.bootstrap, "group.id": uuid.uuid4().hex, **QUIET}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < 2 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            values.append(msg.value())
    consumer.close()
    assert values == [b"before", b"while-down"]
    assert _partition(info.bootstrap, topic).leader != leader

    result = _cli("start", "--node", str(leader), "--data-dir", str(local.data_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == info.bootstrap
    status = local.status()
    assert status is not None and status.running
    # Back with its data: it catches up and rejoins the in-sync replicas.
    deadline = time.monotonic() + 30
    while len(_partition(info.bootstrap, topic).isrs) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sorted(_partition(info.bootstrap, topic).isrs) == [1, 2, 3]


def test_cli_stop_stops_every_node(cluster: tuple[LocalCluster, ClusterInfo]) -> None:
    local, info = cluster
    result = _cli("stop", "--data-dir", str(local.data_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"({info.bootstrap})")
    status = local.status()
    assert status is not None
    assert not any(node.running for node in status.nodes)
    assert _cli("status", "--data-dir", str(local.data_dir)).returncode == 1
    for path in Path(local.data_dir).glob("node-*/broker.pid"):
        pytest.fail(f"{path} left behind")
