"""The shape of a local broker or cluster: node ids, ports, cluster id, security; recorded
at first start and checked at every later one.

Written to the data dir at first start, so every later start, and a restart of one node,
finds the same ports and the same KRaft cluster:

    one node      <data-dir>/broker.json   {"port", "controller_port", "cluster_id",
                                            "security"}; the node's files in <data-dir>
    N nodes       <data-dir>/cluster.json  {"cluster_id", "security",
                                            "nodes": [{"id", "port", "controller_port"}]};
                                           node i's files in <data-dir>/node-<i>

A one-node ``broker.json`` may lack keys (older versions wrote fewer): ports missing are
picked again at start, a missing cluster id is drawn anew.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streamdag.broker import ports
from streamdag.errors import BrokerLayoutMismatch, ConfigError, PortInUse

__all__ = [
    "SECURITY_MODES",
    "ClusterLayout",
    "NodeLayout",
    "Security",
    "new_cluster_id",
    "plan_layout",
    "read_layout",
    "write_layout",
]

Security = Literal["plaintext", "sasl_ssl"]
SECURITY_MODES: tuple[Security, ...] = ("plaintext", "sasl_ssl")

HOST = "127.0.0.1"
DEFAULT_PORT = 9092


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64, never starting with ``-``.

    Kafka's own ``Uuid.randomUuid`` draws again for a leading ``-`` so the id cannot be taken
    for a command-line option; so does this.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class NodeLayout:
    id: int
    port: int
    controller_port: int

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True)
class ClusterLayout:
    cluster_id: str
    nodes: tuple[NodeLayout, ...]
    security: Security = "plaintext"

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def voters(self) -> str:
        """``controller.quorum.voters``: every node is a controller."""
        return ",".join(f"{n.id}@{HOST}:{n.controller_port}" for n in self.nodes)

    @property
    def replication(self) -> int:
        """Replicas of every topic, internal ones included: up to three."""
        return min(len(self.nodes), 3)

    @property
    def min_insync(self) -> int:
        """One fewer than the replicas (2 of 3), so one node may be down while acks=all
        writes go on."""
        return max(1, self.replication - 1)

    def node(self, node_id: int) -> NodeLayout:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def node_dir(self, data_dir: Path, node_id: int) -> Path:
        return data_dir if len(self.nodes) == 1 else data_dir / f"node-{node_id}"


def _single_file(data_dir: Path) -> Path:
    return data_dir / "broker.json"


def _cluster_file(data_dir: Path) -> Path:
    return data_dir / "cluster.json"


def _security(value: object) -> Security:
    return value if value in SECURITY_MODES else "plaintext"


def read_single(data_dir: Path) -> dict[str, object]:
    """The raw ``broker.json`` of a one-node data dir ({} when there is none)."""
    try:
        meta: dict[str, object] = json.loads(_single_file(data_dir).read_text())
    except (OSError, ValueError):
        return {}
    return meta


def read_layout(data_dir: Path) -> ClusterLayout | None:
    """The layout recorded in ``data_dir``; None when nothing was started there, or a
    one-node record is incomplete."""
    try:
        raw = json.loads(_cluster_file(data_dir).read_text())
    except (OSError, ValueError):
        raw = None
    if isinstance(raw, dict):
        nodes = tuple(
            NodeLayout(int(n["id"]), int(n["port"]), int(n["controller_port"]))
            for n in raw["nodes"]
        )
        return ClusterLayout(str(raw["cluster_id"]), nodes, _security(raw.get("security")))
    meta = read_single(data_dir)
    port, controller_port, cluster_id = (
        meta.get("port"),
        meta.get("controller_port"),
        meta.get("cluster_id"),
    )
    if isinstance(port, int) and isinstance(controller_port, int) and isinstance(cluster_id, str):
        node = NodeLayout(1, port, controller_port)
        return ClusterLayout(cluster_id, (node,), _security(meta.get("security")))
    return None


def _recorded_security(data_dir: Path) -> Security | None:
    """The security of whatever was recorded in ``data_dir``, even an incomplete record."""
    layout = read_layout(data_dir)
    if layout is not None:
        return layout.security
    meta = read_single(data_dir)
    return _security(meta.get("security")) if meta else None


def write_layout(data_dir: Path, layout: ClusterLayout) -> None:
    if len(layout.nodes) == 1:
        node = layout.nodes[0]
        record: dict[str, object] = {
            "port": node.port,
            "controller_port": node.controller_port,
            "cluster_id": layout.cluster_id,
        }
        if layout.security != "plaintext":
            record["security"] = layout.security
        _single_file(data_dir).write_text(json.dumps(record))
        return
    cluster = {
        "cluster_id": layout.cluster_id,
        "security": layout.security,
        "nodes": [
            {"id": n.id, "port": n.port, "controller_port": n.controller_port} for n in layout.nodes
        ],
    }
    _cluster_file(data_dir).write_text(json.dumps(cluster, indent=2))


def plan_layout(
    data_dir: Path, *, nodes: int | None, port: int | None, security: Security | None
) -> ClusterLayout:
    """The layout to start: the recorded one, checked against what is asked, or a new one."""
    recorded = read_layout(data_dir)
    if recorded is not None:
        recorded_nodes: int | None = len(recorded.nodes)
    else:
        recorded_nodes = 1 if read_single(data_dir) else None
    nodes = nodes or recorded_nodes or 1
    where = str(data_dir)
    if recorded_nodes is not None and nodes != recorded_nodes:
        kind = "cluster" if recorded_nodes > 1 else "broker"
        raise BrokerLayoutMismatch(
            where,
            f"it holds a {recorded_nodes}-node {kind}; start it with --nodes "
            f"{recorded_nodes} or pick another --data-dir",
        )
    was = _recorded_security(data_dir)
    security = security or was or "plaintext"
    if was is not None and security != was:
        raise BrokerLayoutMismatch(
            where,
            f"its broker was set up with --security {was}; start it so or pick another --data-dir",
        )
    if nodes == 1:
        return _plan_single(data_dir, port, security)
    if recorded is not None:
        first, last = recorded.nodes[0].port, recorded.nodes[-1].port
        if port is not None and port != first:
            raise BrokerLayoutMismatch(
                where,
                f"its cluster listens on ports {first}-{last} (recorded at first start); "
                "drop --port or pick another --data-dir",
            )
        for node in recorded.nodes:
            for p in (node.port, node.controller_port):
                if not ports.port_free(p):
                    raise PortInUse(p)
        return recorded
    port = port or DEFAULT_PORT
    if port + nodes - 1 > 65535:
        raise ConfigError(f"ports {port}-{port + nodes - 1} go past 65535; pick a lower --port")
    client_ports = list(range(port, port + nodes))
    for p in client_ports:
        if not ports.port_free(p):
            raise PortInUse(p)
    controller_ports: list[int] = []
    for _ in range(nodes):
        taken = [*client_ports, *controller_ports]
        controller_ports.append(ports.free_port_run(avoid=taken))
    layout_nodes = tuple(
        NodeLayout(i + 1, client_ports[i], controller_ports[i]) for i in range(nodes)
    )
    return ClusterLayout(new_cluster_id(), layout_nodes, security)


def _plan_single(data_dir: Path, port: int | None, security: Security) -> ClusterLayout:
    """One node keeps its old freedom: another port on request, and a new controller
    port when the recorded one is taken."""
    meta = read_single(data_dir)
    stored_port = meta.get("port")
    if port is None:
        port = stored_port if isinstance(stored_port, int) else DEFAULT_PORT
    if not ports.port_free(port):
        raise PortInUse(port)
    controller_port = meta.get("controller_port")
    while (
        not isinstance(controller_port, int)
        or controller_port == port
        or not ports.port_free(controller_port)
    ):
        # Nothing listens on ``port`` yet, so a free port may be that one: pick again.
        controller_port = ports.free_port()
    cluster_id = meta.get("cluster_id")
    if not isinstance(cluster_id, str):
        cluster_id = new_cluster_id()
    return ClusterLayout(cluster_id, (NodeLayout(1, port, controller_port),), security)
