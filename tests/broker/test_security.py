"""A local broker started with ``--security sasl_ssl`` against real Apache Kafka: clients
with client.properties get in, a wrong password or a plaintext client does not, and the
password shows nowhere but in the two files meant to hold it. One broker for the module."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamdag.broker import LocalCluster, free_port_run
from streamdag.kafka.connection import read_properties
from streamdag.settings import get_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

QUIET: dict[str, Any] = {"log_level": 0, "logger": lambda *_: None}


@dataclass(frozen=True)
class Secured:
    data_dir: Path
    stdout: str
    stderr: str

    @property
    def client_properties(self) -> Path:
        return Path(self.stdout.splitlines()[1])

    def client_config(self) -> dict[str, str]:
        return read_properties(self.client_properties)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """Started through the CLI, to see what it prints."""
    data_dir = tmp_path_factory.mktemp("secured")
    command = [sys.executable, "-m", "streamdag.cli.main", "broker", "start"]
    command += ["--security", "sasl_ssl", "--port", str(free_port_run())]
    command += ["--data-dir", str(data_dir), "--timeout", "90"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=150, check=False)
    try:
        assert result.returncode == 0, result.stderr
        yield Secured(data_dir, result.stdout, result.stderr)
    finally:
        local = LocalCluster(data_dir, libs_dir=get_settings().kafka_libs)
        status = local.status()
        if status is not None and any(node.running for node in status.nodes):
            local.stop()


def test_start_prints_the_client_properties_path_and_never_the_password(
    secured: Secured,
) -> None:
    bootstrap, path = secured.stdout.splitlines()
    assert path == str(secured.data_dir / "security" / "client.properties")
    assert stat.S_IMODE(secured.client_properties.stat().st_mode) == 0o600
    config = secured.client_config()
    assert config["bootstrap.servers"] == bootstrap
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert Path(config["ssl.ca.location"]).is_absolute()

    password = config["sasl.password"]
    assert len(password) >= 24
    assert password not in secured.stdout + secured.stderr
    holders = {
        p.relative_to(secured.data_dir).as_posix()
        for p in secured.data_dir.rglob("*")
        if p.is_file() and password.encode() in p.read_bytes()
    }
    assert holders == {"security/client.properties", "server.properties"}
    assert stat.S_IMODE((secured.data_dir / "server.properties").stat().st_mode) == 0o600


def test_a_client_with_client_properties_produces_and_consumes(secured: Secured) -> None:
    config = {**secured.client_config(), **QUIET}
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(config)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=15)
    producer = Producer(config)
    producer.produce(topic, b"secret-record")
    assert producer.flush(15) == 0
    consumer = Consumer({**config, "group.id": uuid.uuid4().hex})
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        deadline = time.monotonic() + 15
        msg = None
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None and msg.value() == b"secret-record"
    finally:
        consumer.close()


def test_a_wrong_password_gets_an_authentication_error(secured: Secured) -> None:
    errors: list[KafkaError] = []
    config = {**secured.client_config(), **QUIET, "sasl.password": "not-the-password"}
    producer = Producer({**config, "error_cb": errors.append})
    began = time.monotonic()
    while time.monotonic() - began < 30 and not errors:
        producer.poll(0.5)
    assert errors, "no error within 30 s"
    assert errors[0].code() == KafkaError._AUTHENTICATION
    assert "SCRAM-SHA-512" in errors[0].str()


def test_a_plaintext_client_is_refused(secured: Secured) -> None:
    bootstrap = secured.client_config()["bootstrap.servers"]
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    with pytest.raises(KafkaException) as failure:
        admin.list_topics(timeout=3)
    assert failure.value.args[0].code() in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT)


def test_a_secured_three_node_cluster_replicates_over_sasl_ssl(tmp_path: Path) -> None:
    """The nodes replicate to each other over the same SASL_SSL listener: the start's own
    readiness already wrote a record with acks=all to three replicas."""
    local = LocalCluster(tmp_path, libs_dir=get_settings().kafka_libs)
    info = local.start(nodes=3, port=free_port_run(3), security="sasl_ssl", timeout=120)
    try:
        assert info.client_properties == tmp_path / "security" / "client.properties"
        assert read_properties(info.client_properties)["bootstrap.servers"] == info.bootstrap
        assert info.client_config == read_properties(info.client_properties)
        assert info.client_config["sasl.password"] not in repr(info)
        admin = AdminClient({**info.client_config, **QUIET})
        health = admin.list_topics("__streamdag_health", timeout=10).topics["__streamdag_health"]
        assert sorted(health.partitions[0].isrs) == [1, 2, 3]
    finally:
        local.stop()
