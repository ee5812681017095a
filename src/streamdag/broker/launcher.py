"""A local single-node Apache Kafka (KRaft) broker: a one-node ``LocalCluster``.

The broker is one JVM running ``kafka.Kafka`` from the jars of ``broker.jars``. A data
dir holds everything about one broker:

    <data-dir>/server.properties   written at every start, ports kept across restarts
    <data-dir>/log4j2.properties
    <data-dir>/broker.json         ports, cluster id and security
    <data-dir>/broker.pid          pid of the running JVM (removed on a clean stop)
    <data-dir>/broker.log          the broker's own log (stdout/stderr in broker.out)
    <data-dir>/kraft/              KRaft metadata and topic data, kept across restarts
    <data-dir>/security/           CA, certificate and client.properties (sasl_ssl only)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamdag.broker.cluster import ClusterInfo, LocalCluster
from streamdag.broker.layout import Security
from streamdag.broker.ports import free_port
from streamdag.errors import BrokerNotRunning, BrokerStartFailed

__all__ = ["BrokerInfo", "LocalBroker", "free_port"]


@dataclass(frozen=True)
class BrokerInfo:
    pid: int
    port: int
    data_dir: Path
    # librdkafka settings a client needs: bootstrap.servers and, when secured, the
    # SASL_SSL ones of client.properties (password included, hence kept out of repr).
    client_config: dict[str, str] = field(repr=False)
    client_properties: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def of(cls, cluster: ClusterInfo) -> BrokerInfo | None:
        """The broker of a running one-node cluster, else None."""
        node = cluster.nodes[0]
        if len(cluster.nodes) != 1 or node.pid is None:
            return None
        return cls(
            node.pid, node.port, cluster.data_dir, cluster.client_config, cluster.client_properties
        )


class LocalBroker:
    """One local broker bound to a data dir.

    ``start`` formats storage on first use, launches the JVM in its own session (it
    outlives the caller) and returns once a record can be produced and consumed.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        libs_dir: Path,
        java_home: Path | None = None,
        heap: str = "512m",
    ) -> None:
        self._cluster = LocalCluster(data_dir, libs_dir=libs_dir, java_home=java_home, heap=heap)
        self.data_dir = self._cluster.data_dir
        self.libs_dir = libs_dir
        self.java_home = java_home
        self.heap = heap

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    def status(self) -> BrokerInfo | None:
        """The running broker of this data dir, or None."""
        cluster = self._cluster.status()
        return None if cluster is None else BrokerInfo.of(cluster)

    def start(
        self, *, port: int | None = None, security: Security | None = None, timeout: float = 60.0
    ) -> BrokerInfo:
        """Start the broker (formatting storage on first use) and wait until it is ready.

        ``port`` defaults to the last one used, else 9092; ``security`` to what the data
        dir recorded, else plaintext.
        """
        cluster = self._cluster.start(nodes=1, port=port, security=security, timeout=timeout)
        info = BrokerInfo.of(cluster)
        if info is None:
            raise BrokerStartFailed(f"the broker at {cluster.bootstrap} exited right after start")
        return info

    def stop(self, *, timeout: float = 30.0) -> BrokerInfo:
        """SIGTERM the broker and wait for a clean shutdown; SIGKILL if it does not come."""
        info = self.status()
        if info is None:
            raise BrokerNotRunning(str(self.data_dir))
        self._cluster.stop(timeout=timeout)
        return info
