"""Configuration files of a local Kafka node (KRaft, broker and controller in one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamdag.broker.layout import HOST, ClusterLayout
from streamdag.broker.security import SCRAM_MECHANISM

__all__ = ["BrokerTls", "log4j2_properties", "server_properties"]


def server_properties(
    *, layout: ClusterLayout, node_id: int, log_dir: Path, tls: BrokerTls | None = None
) -> str:
    """Settings of one combined broker+controller node on a small machine.

    Topics, internal ones included, get ``layout.replication`` replicas (1 for one node, 3
    for a cluster) with one fewer in sync required; internal topics get few partitions so
    the first consumer group and first transaction start quickly; the cleaner's buffer is
    small to fit a modest heap; short group session minimums let tests and chaos runs
    detect a killed worker in a second or two. In a cluster a node that stops
    heartbeating is fenced after 6 s (not 9), so its partitions move sooner; a node
    restarted within 6 s of its stop waits out that session before it registers again.
    """
    node = layout.node(node_id)
    rf, min_isr = str(layout.replication), str(layout.min_insync)
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": layout.voters,
        "listeners": f"PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "background.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "log.cleaner.threads": "1",
        "log.retention.hours": "168",
    }
    if len(layout.nodes) > 1:
        lines |= {
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "broker.session.timeout.ms": "6000",
            "broker.heartbeat.interval.ms": "1000",
            # A controlled shutdown waits for the controller quorum to approve it. When the
            # whole cluster stops, the nodes quick to stop take the quorum with them and
            # the others wait minutes for an approval that cannot come. Without it a node
            # still shuts down cleanly; its partitions move once it is fenced.
            "controlled.shutdown.enable": "false",
        }
    if tls is not None:
        lines |= _sasl_ssl(node.port, node.controller_port, tls)
    return "".join(f"{k}={v}\n" for k, v in lines.items())


@dataclass(frozen=True)
class BrokerTls:
    """What a node needs to serve SASL_SSL: its PEM key store, the CA, the SCRAM user."""

    keystore: Path
    truststore: Path
    username: str
    password: str


def _sasl_ssl(port: int, controller_port: int, tls: BrokerTls) -> dict[str, str]:
    """One SASL_SSL listener for clients and for replication between nodes (the nodes log
    in as the same SCRAM user); the controller listener stays PLAINTEXT on loopback."""
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{tls.username}" password="{tls.password}";'
    )
    return {
        "listeners": f"SASL_SSL://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"SASL_SSL://{HOST}:{port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls.truststore),
        "ssl.client.auth": "none",
    }


def log4j2_properties(*, log_file: Path) -> str:
    """Broker logs go to a rolling file in the data dir, at INFO, with noisy loggers at WARN."""
    return f"""\
status = warn
name = streamdag-broker
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.filePattern = {log_file}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.controller.name = org.apache.kafka.controller
logger.controller.level = warn
logger.raft.name = org.apache.kafka.raft
logger.raft.level = warn
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = warn
"""
