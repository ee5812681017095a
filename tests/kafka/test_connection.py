"""The connection object: where its properties come from, in which order, and that its
secrets never show."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdag.errors import ConfigError
from streamdag.kafka.connection import (
    KafkaConnection,
    environment_properties,
    is_secret,
    parse_properties,
)

CLIENT_PROPERTIES = r"""
# SASL/SCRAM over TLS
bootstrap.servers=broker-1:9093,broker-2:9093
security.protocol = SASL_SSL
sasl.mechanism: SCRAM-SHA-512
sasl.username streamdag
sasl.password=p4ss=w0rd\#1
! a Java-style comment
ssl.ca.location=/etc/kafka/\
    ca.pem
client.rack=eu-west-1a
"""


def test_a_properties_file_reads_as_the_kafka_tools_read_it() -> None:
    assert parse_properties(CLIENT_PROPERTIES) == {
        "bootstrap.servers": "broker-1:9093,broker-2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "streamdag",
        "sasl.password": "p4ss=w0rd#1",
        "ssl.ca.location": "/etc/kafka/ca.pem",
        "client.rack": "eu-west-1a",
    }
    assert parse_properties("a\\u0041=\\u00e9\\tx\nempty=\nkey\\ with\\ space=v") == {
        "aA": "é\tx",
        "empty": "",
        "key with space": "v",
    }


def test_every_property_reaches_librdkafka_and_secrets_show_nowhere_else(
    tmp_path: Path,
) -> None:
    path = tmp_path / "client.properties"
    path.write_text(CLIENT_PROPERTIES)
    conn = KafkaConnection.resolve(config_file=path)
    config = conn.client_properties()
    assert config["bootstrap.servers"] == "broker-1:9093,broker-2:9093"
    assert config["sasl.password"] == "p4ss=w0rd#1"
    assert config["client.rack"] == "eu-west-1a"
    for shown in (repr(conn), str(conn), conn.describe(), conn.model_dump_json()):
        assert "p4ss" not in shown
    assert conn.describe() == (
        "broker-1:9093,broker-2:9093 security.protocol=SASL_SSL "
        "sasl.mechanism=SCRAM-SHA-512 sasl.username=streamdag"
    )


def test_file_beats_environment_and_bootstrap_beats_both(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("security.protocol=SSL\nbootstrap.servers=from-file:9093\n")
    environment = environment_properties(
        {
            "STREAMDAG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "STREAMDAG_KAFKA_SASL_MECHANISM": "PLAIN",
            "STREAMDAG_KAFKA_SSL_KEY_PASSWORD": "k3y",
            "OTHER": "x",
        },
        "STREAMDAG_KAFKA_",
    )
    assert environment == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "ssl.key.password": "k3y",
    }
    conn = KafkaConnection.resolve(
        config_file=path, environment=environment, default_bootstrap="from-env:9092"
    )
    assert conn.bootstrap_servers == "from-file:9093"
    assert conn.properties["security.protocol"] == "SSL"
    assert conn.properties["sasl.mechanism"] == "PLAIN"
    assert "ssl.key.password" in conn.secrets
    assert KafkaConnection.resolve(environment=environment).bootstrap_servers == "localhost:9092"
    flagged = KafkaConnection.resolve(bootstrap="flag:1", config_file=path)
    assert flagged.bootstrap_servers == "flag:1"


def test_a_java_jaas_line_becomes_username_and_password() -> None:
    conn = KafkaConnection.from_properties(
        {
            "sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule "
            'required username="key-123" password="s3cr3t";',
            "sasl.mechanism": "PLAIN",
        }
    )
    assert conn.properties["sasl.username"] == "key-123"
    assert conn.client_properties()["sasl.password"] == "s3cr3t"
    assert "sasl.jaas.config" not in conn.client_properties()
    with pytest.raises(ConfigError, match="only PlainLoginModule and ScramLoginModule"):
        KafkaConnection.from_properties(
            {"sasl.jaas.config": "com.example.KerberosModule required;"}, origin="x.properties"
        )


def test_secret_properties_are_recognised() -> None:
    for name in (
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.pem",
        "sasl.oauthbearer.config",
    ):
        assert is_secret(name), name
    for name in ("sasl.username", "ssl.key.location", "security.protocol", "bootstrap.servers"):
        assert not is_secret(name), name


def test_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read Kafka config .*nope.properties"):
        KafkaConnection.resolve(config_file=tmp_path / "nope.properties")


def test_a_bare_string_is_upgraded_at_once() -> None:
    conn = KafkaConnection.of("127.0.0.1:9092")
    assert conn.client_properties() == {"bootstrap.servers": "127.0.0.1:9092"}
    assert KafkaConnection.of(conn) is conn
