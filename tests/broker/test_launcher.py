"""The local broker launcher against real Apache Kafka: start, use, stop, restart, faults."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streamdag.broker import LocalBroker, free_port
from streamdag.broker.layout import new_cluster_id
from streamdag.errors import BrokerAlreadyRunning, JavaNotFound, KafkaJarsMissing, PortInUse
from streamdag.kafka import TopicSpec, ensure_topics
from streamdag.settings import get_settings

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker of this module's own, so it can be stopped and restarted."""
    broker = LocalBroker(tmp_path_factory.mktemp("own"), libs_dir=get_settings().kafka_libs)
    yield broker
    if broker.status() is not None:
        broker.stop()


def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce(topic, value)
    assert producer.flush(10) == 0


def _read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    try:
        for _ in range(100):
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                values.append(msg.value())
            if len(values) >= expected:
                break
    finally:
        consumer.close()
    return values


def test_start_produce_consume_stop_restart_keeps_data(own_broker: LocalBroker) -> None:
    info = own_broker.start(port=free_port())
    assert own_broker.status() == info
    ensure_topics(info.bootstrap, [TopicSpec("kept", 1)])
    _produce(info.bootstrap, "kept", b"before-restart")
    assert _read_all(info.bootstrap, "kept", 1) == [b"before-restart"]

    own_broker.stop()
    assert own_broker.status() is None
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", info.port)) != 0, "port still open after stop"

    again = own_broker.start()  # the stored port is reused
    assert again.port == info.port
    assert _read_all(again.bootstrap, "kept", 1) == [b"before-restart"]


def test_second_start_on_running_data_dir_is_refused(own_broker: LocalBroker) -> None:
    if own_broker.status() is None:
        own_broker.start(port=free_port())
    other = LocalBroker(own_broker.data_dir, libs_dir=own_broker.libs_dir)
    with pytest.raises(BrokerAlreadyRunning, match="already runs on data dir"):
        other.start(port=free_port())


def test_taken_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        broker = LocalBroker(tmp_path, libs_dir=get_settings().kafka_libs)
        with pytest.raises(PortInUse, match=f"port {port}"):
            broker.start(port=port)


def test_missing_java_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    broker = LocalBroker(
        tmp_path / "d", libs_dir=get_settings().kafka_libs, java_home=tmp_path / "nojava"
    )
    with pytest.raises(JavaNotFound, match="java not found"):
        broker.start(port=free_port())


def test_missing_jars_are_reported(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "d", libs_dir=tmp_path / "empty")
    with pytest.raises(KafkaJarsMissing, match="streamdag broker install"):
        broker.start(port=free_port())


def test_cli_prints_one_line_error_and_fails(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "streamdag.cli.main",
                "broker",
                "start",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "d"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith(f"error: port {port} on 127.0.0.1 is already in use")


def test_cli_status_of_a_stopped_broker(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamdag.cli.main",
            "broker",
            "status",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "not running" in result.stdout


def test_a_controller_port_equal_to_the_broker_port_is_picked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listens on the broker's port before start, so the free port picked for the
    controller can be that very port; the launcher must pick again."""
    port, other = free_port(), free_port()
    picks = iter([port, other])
    monkeypatch.setattr("streamdag.broker.ports.free_port", lambda: next(picks))
    broker = LocalBroker(tmp_path / "kraft", libs_dir=get_settings().kafka_libs)
    try:
        info = broker.start(port=port)
        assert info.port == port
        ensure_topics(info.bootstrap, [TopicSpec("ports", 1)])
        _produce(info.bootstrap, "ports", b"ok")
        assert _read_all(info.bootstrap, "ports", 1) == [b"ok"]
    finally:
        broker.stop()


def test_cluster_ids_never_start_with_a_dash() -> None:
    """One id in 64 would otherwise start with ``-`` and be read as an option by Kafka's
    storage tool, failing the broker's first start."""
    ids = [new_cluster_id() for _ in range(3000)]
    assert not [cluster_id for cluster_id in ids if cluster_id.startswith("-")]
    assert all(len(cluster_id) == 22 for cluster_id in ids)
    assert len(set(ids)) == len(ids)


def test_a_data_dir_whose_cluster_id_starts_with_a_dash_still_starts(tmp_path: Path) -> None:
    """A data directory recorded with such an id (as earlier versions could write) formats
    and starts."""
    data_dir = tmp_path / "kraft"
    data_dir.mkdir()
    (data_dir / "broker.json").write_text(json.dumps({"cluster_id": "-b4DY186QAOlKMYoN-iW8w"}))
    broker = LocalBroker(data_dir, libs_dir=get_settings().kafka_libs)
    try:
        info = broker.start(port=free_port())
        ensure_topics(info.bootstrap, [TopicSpec("dash", 1)])
        _produce(info.bootstrap, "dash", b"ok")
        assert _read_all(info.bootstrap, "dash", 1) == [b"ok"]
    finally:
        broker.stop()
