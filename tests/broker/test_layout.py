"""The pure parts of the local broker: recorded layouts, node settings, credentials, and the
starts refused before any JVM runs."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

import streamdag.broker
from streamdag.broker import LocalCluster, free_port_run
from streamdag.broker.config import BrokerTls, server_properties
from streamdag.broker.layout import ClusterLayout, NodeLayout, read_layout, write_layout
from streamdag.broker.security import SecurityFiles, scram_credential
from streamdag.errors import BrokerLayoutMismatch, BrokerStartFailed, ConfigError, PortInUse
from streamdag.kafka.connection import read_properties
from streamdag.settings import get_settings

THREE = ClusterLayout(
    "c1", (NodeLayout(1, 29092, 31001), NodeLayout(2, 29093, 31002), NodeLayout(3, 29094, 31003))
)


def test_the_public_api() -> None:
    assert sorted(streamdag.broker.__all__) == [
        "BrokerInfo",
        "ClusterInfo",
        "LocalBroker",
        "LocalCluster",
        "NodeInfo",
        "SECURITY_MODES",
        "Security",
        "free_port",
        "free_port_run",
    ]


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_a_single_node_keeps_its_settings(tmp_path: Path) -> None:
    layout = ClusterLayout("c1", (NodeLayout(1, 9092, 9093),))
    props = _props(server_properties(layout=layout, node_id=1, log_dir=tmp_path / "kraft"))
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert "default.replication.factor" not in props
    assert "min.insync.replicas" not in props


def test_cluster_nodes_replicate_three_times_and_need_two_in_sync(tmp_path: Path) -> None:
    props = _props(server_properties(layout=THREE, node_id=2, log_dir=tmp_path))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:31001,2@127.0.0.1:31002,3@127.0.0.1:31003"
    )
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29093"
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
    ):
        assert props[key] == "3", key
    assert props["min.insync.replicas"] == "2"
    assert props["transaction.state.log.min.isr"] == "2"


def test_a_secured_node_serves_sasl_ssl_and_keeps_the_controller_on_loopback(
    tmp_path: Path,
) -> None:
    tls = BrokerTls(tmp_path / "broker.pem", tmp_path / "ca.pem", "streamdag", "pw")
    props = _props(server_properties(layout=THREE, node_id=1, log_dir=tmp_path, tls=tls))
    assert props["listeners"] == "SASL_SSL://127.0.0.1:29092,CONTROLLER://127.0.0.1:31001"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:29092"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["ssl.keystore.type"] == props["ssl.truststore.type"] == "PEM"


def test_layouts_round_trip_one_node_in_broker_json_many_in_cluster_json(tmp_path: Path) -> None:
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir()
    many.mkdir()
    single = ClusterLayout("c1", (NodeLayout(1, 9092, 9093),), "sasl_ssl")
    write_layout(one, single)
    write_layout(many, THREE)
    assert read_layout(one) == single
    assert read_layout(many) == THREE
    assert json.loads((one / "broker.json").read_text())["port"] == 9092
    assert not (one / "cluster.json").exists()
    assert THREE.node_dir(many, 2) == many / "node-2"
    assert single.node_dir(one, 1) == one


def test_an_old_broker_json_reads_as_a_plaintext_single_node(tmp_path: Path) -> None:
    (tmp_path / "broker.json").write_text(
        json.dumps({"port": 9092, "controller_port": 9093, "cluster_id": "x"})
    )
    assert read_layout(tmp_path) == ClusterLayout("x", (NodeLayout(1, 9092, 9093),))


def test_credentials_are_a_ca_a_broker_certificate_for_loopback_and_private_files(
    tmp_path: Path,
) -> None:
    files = SecurityFiles(tmp_path / "security")
    with pytest.raises(BrokerStartFailed, match=r"client\.properties is missing"):
        files.ensure("127.0.0.1:9092", new=False)  # formatted storage needs the old password
    password = files.ensure("127.0.0.1:9092", new=True)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    broker_pem = files.broker_pem.read_bytes()
    assert b"PRIVATE KEY" in broker_pem
    cert = x509.load_pem_x509_certificates(broker_pem)[0]
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)

    for private in (files.ca_key, files.broker_pem, files.client_properties):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    props = read_properties(files.client_properties)
    assert props == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "streamdag",
        "sasl.password": password,
        "ssl.ca.location": str(files.ca_cert.resolve()),
    }
    # A later start keeps the certificates and the password, for a new bootstrap.
    ca_before = files.ca_cert.read_bytes()
    assert files.ensure("127.0.0.1:9200", new=True) == password
    assert files.ca_cert.read_bytes() == ca_before
    assert read_properties(files.client_properties)["bootstrap.servers"] == "127.0.0.1:9200"


def test_the_scram_credential_is_pre_salted_so_no_password_reaches_a_command_line() -> None:
    arg = scram_credential("s3cret")
    assert "s3cret" not in arg
    fields = dict(
        part.split("=", 1) for part in arg.removeprefix("SCRAM-SHA-512=[").rstrip("]").split(",")
    )
    assert fields["name"] == "streamdag"
    salt = base64.b64decode(fields["salt"].strip('"'))
    salted = base64.b64decode(fields["saltedpassword"].strip('"'))
    iterations = int(fields["iterations"])
    assert salted == hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, iterations)


# -- starts refused before any JVM runs ---------------------------------------------------


def _cluster(data_dir: Path) -> LocalCluster:
    return LocalCluster(data_dir, libs_dir=get_settings().kafka_libs)


def test_a_start_that_does_not_fit_the_recorded_cluster_is_refused(tmp_path: Path) -> None:
    write_layout(tmp_path, THREE)
    cluster = _cluster(tmp_path)
    with pytest.raises(BrokerLayoutMismatch, match="holds a 3-node cluster"):
        cluster.start(nodes=1)
    with pytest.raises(BrokerLayoutMismatch, match="--security plaintext"):
        cluster.start(security="sasl_ssl")
    with pytest.raises(BrokerLayoutMismatch, match="ports 29092-29094"):
        cluster.start(port=29100)
    with pytest.raises(BrokerLayoutMismatch, match="nodes 1 to 3, not 4"):
        cluster.start_node(4)
    with pytest.raises(BrokerLayoutMismatch, match="start it without --node"):
        _cluster(tmp_path / "empty").start_node(1)


def test_a_single_broker_data_dir_is_not_started_as_a_cluster(tmp_path: Path) -> None:
    (tmp_path / "broker.json").write_text(json.dumps({"cluster_id": "x"}))
    with pytest.raises(BrokerLayoutMismatch, match="holds a 1-node broker"):
        _cluster(tmp_path).start(nodes=3)


def test_every_client_port_of_a_new_cluster_must_be_free(tmp_path: Path) -> None:
    port = free_port_run(3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port + 2))
        s.listen()
        with pytest.raises(PortInUse, match=f"port {port + 2}"):
            _cluster(tmp_path).start(nodes=3, port=port)
    assert read_layout(tmp_path) is None


def test_a_cluster_whose_ports_would_pass_65535_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="65534-65536"):
        _cluster(tmp_path).start(nodes=3, port=65534)


def test_cli_refuses_a_taken_cluster_port_in_one_line(tmp_path: Path) -> None:
    port = free_port_run(3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port + 1))
        s.listen()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "streamdag.cli.main",
                "broker",
                "start",
                "--nodes",
                "3",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith(f"error: port {port + 1} on 127.0.0.1 is already in use")
