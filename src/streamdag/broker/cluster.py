"""Start, stop and query a local Apache Kafka (KRaft) cluster of one or more nodes.

Every node is one JVM running ``kafka.Kafka`` as broker and controller, from the jars of
``broker.jars``, on 127.0.0.1. Node ``i`` of an N-node cluster listens for clients on
``port + i - 1`` and for the controller quorum on a free port picked at first
start; the quorum is static (``controller.quorum.voters``, every node a voter). The
layout (node count, ports, cluster id, security) is recorded in the data dir at first
start (see ``layout.py``) and every later start, of all nodes or of one, reuses it.

The nodes of a cluster format their storage and boot in parallel. ``start`` returns when
every node is in the metadata and a record round-trips with acks=all on a topic
replicated to up to three of them; ``start_node`` returns when the node is back in the
metadata.
"""

from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamdag.broker import ports
from streamdag.broker.config import BrokerTls, server_properties
from streamdag.broker.layout import (
    HOST,
    ClusterLayout,
    Security,
    plan_layout,
    read_layout,
    read_single,
    write_layout,
)
from streamdag.broker.process import Jvm, NodeProcess, finish_format
from streamdag.broker.readiness import wait_for_listener, wait_for_node, wait_until_ready
from streamdag.broker.security import USERNAME, SecurityFiles, scram_credential
from streamdag.errors import (
    BrokerAlreadyRunning,
    BrokerLayoutMismatch,
    BrokerNotRunning,
    BrokerStartFailed,
    PortInUse,
)
from streamdag.kafka.connection import read_properties

__all__ = ["ClusterInfo", "LocalCluster", "NodeInfo"]


@dataclass(frozen=True)
class NodeInfo:
    id: int
    port: int
    pid: int | None  # None when the node does not run

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True)
class ClusterInfo:
    """A local cluster as a client sees it, and each of its nodes."""

    data_dir: Path
    cluster_id: str
    security: Security
    nodes: tuple[NodeInfo, ...]
    # librdkafka settings a client needs: bootstrap.servers and, when secured, the
    # SASL_SSL ones of client.properties (password included, hence kept out of repr).
    client_config: dict[str, str] = field(repr=False)
    client_properties: Path | None = None

    @property
    def bootstrap(self) -> str:
        return self.client_config["bootstrap.servers"]

    @property
    def running(self) -> bool:
        """Whether every node runs."""
        return all(node.running for node in self.nodes)

    def node(self, node_id: int) -> NodeInfo:
        return next(node for node in self.nodes if node.id == node_id)


class LocalCluster:
    """The local cluster of one data dir (``nodes=1``: a single broker, laid out as the
    single-node broker always was)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        libs_dir: Path,
        java_home: Path | None = None,
        heap: str = "512m",
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.libs_dir = libs_dir
        self.java_home = java_home
        self.heap = heap
        self._processes: dict[Path, NodeProcess] = {}
        self._security = SecurityFiles(self.data_dir / "security")

    # -- queries -----------------------------------------------------------------------
    def layout(self) -> ClusterLayout | None:
        """The layout recorded at first start, or None."""
        return read_layout(self.data_dir)

    def status(self) -> ClusterInfo | None:
        """Every node of the recorded cluster, running or not; None if none was started."""
        layout = self.layout()
        return None if layout is None else self._info(layout)

    # -- start -------------------------------------------------------------------------
    def start(
        self,
        *,
        nodes: int | None = None,
        port: int | None = None,
        security: Security | None = None,
        timeout: float = 60.0,
    ) -> ClusterInfo:
        """Start every node (formatting storage on first use) and wait until the cluster
        is ready.

        ``nodes``, ``port`` and ``security`` default to what the data dir recorded, else
        1 node, port 9092 and plaintext; a cluster's ports are fixed at first start (a
        single node may move to another port).
        """
        self._refuse_if_running()
        jvm = self._jvm()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        layout = plan_layout(self.data_dir, nodes=nodes, port=port, security=security)
        procs = [self._process(layout, node.id) for node in layout.nodes]
        tls = self._tls(layout, new=not any(p.formatted() for p in procs))
        for proc in procs:
            proc.configure(self._server_properties(layout, proc, tls))
        self._format(jvm, [p for p in procs if not p.formatted()], layout, tls)
        write_layout(self.data_dir, layout)

        lean = len(procs) > 1
        for proc in procs:
            proc.launch(jvm, lean=lean)
        info = self._info(layout)
        try:
            wait_until_ready(
                info.client_config,
                brokers=len(procs),
                timeout=timeout,
                alive=lambda: all(p.alive() for p in procs),
            )
        except BrokerStartFailed as exc:
            culprit = next((p for p in procs if not p.alive()), procs[0])
            for proc in procs:
                proc.kill()
            raise BrokerStartFailed(f"{exc}\n{culprit.log_tail()}") from None
        return info

    def start_node(self, node_id: int, *, timeout: float = 60.0) -> ClusterInfo:
        """Start one node of a recorded cluster with its data.

        Returns when the node is back in the cluster's metadata; or, when too few nodes
        run for the controller quorum to form, as soon as its JVM listens.
        """
        layout = self.layout()
        if layout is None:
            raise BrokerLayoutMismatch(
                str(self.data_dir), "no cluster was started here yet; start it without --node"
            )
        ids = [node.id for node in layout.nodes]
        if node_id not in ids:
            raise BrokerLayoutMismatch(
                str(self.data_dir), f"its cluster has nodes {ids[0]} to {ids[-1]}, not {node_id}"
            )
        jvm = self._jvm()
        proc = self._process(layout, node_id)
        node = layout.node(node_id)
        pid = proc.pid()
        if pid is not None:
            raise BrokerAlreadyRunning(str(proc.folder), pid, node.bootstrap)
        for p in (node.port, node.controller_port):
            if not ports.port_free(p):
                raise PortInUse(p)
        tls = self._tls(layout, new=False)
        proc.configure(self._server_properties(layout, proc, tls))
        if not proc.formatted():
            self._format(jvm, [proc], layout, tls)
        others = sum(
            1 for n in layout.nodes if n.id != node_id and self._process(layout, n.id).pid()
        )
        proc.launch(jvm, lean=len(layout.nodes) > 1)
        info = self._info(layout)
        try:
            if 2 * (others + 1) > len(layout.nodes):
                wait_for_node(
                    info.client_config, (node_id, node.bootstrap), timeout=timeout, alive=proc.alive
                )
            else:
                address = f"{HOST}:{node.controller_port}"
                wait_for_listener(address, timeout=timeout, alive=proc.alive)
        except BrokerStartFailed as exc:
            proc.kill()
            raise BrokerStartFailed(f"{exc}\n{proc.log_tail()}") from None
        return info

    # -- stop --------------------------------------------------------------------------
    def stop(self, *, timeout: float = 30.0) -> ClusterInfo:
        """SIGTERM every running node at once and wait for clean shutdowns; SIGKILL those
        still running after ``timeout``. Returns the cluster as it was before the stop."""
        layout = self.layout()
        info = None if layout is None else self._info(layout)
        if layout is None or info is None or not any(n.running for n in info.nodes):
            for proc in self._processes.values():
                proc.pid_file.unlink(missing_ok=True)
            raise BrokerNotRunning(str(self.data_dir))
        stopping = [
            (proc, pid)
            for proc in (self._process(layout, n.id) for n in layout.nodes)
            if (pid := proc.signal(signal.SIGTERM)) is not None
        ]
        deadline = time.monotonic() + timeout
        for proc, pid in stopping:
            if not proc.wait_exit(pid, deadline):
                proc.kill()
            proc.pid_file.unlink(missing_ok=True)
        return info

    def kill_node(self, node_id: int) -> NodeInfo:
        """SIGKILL one node (a crash: no controlled shutdown) and wait until it is gone."""
        layout = self.layout()
        if layout is None or node_id not in {n.id for n in layout.nodes}:
            raise BrokerNotRunning(f"{self.data_dir} (node {node_id})")
        proc = self._process(layout, node_id)
        pid = proc.pid()
        if pid is None:
            raise BrokerNotRunning(f"{proc.folder} (node {node_id})")
        proc.kill()
        return NodeInfo(node_id, layout.node(node_id).port, pid)

    # -- internals ---------------------------------------------------------------------
    def _jvm(self) -> Jvm:
        return Jvm.find(libs_dir=self.libs_dir, java_home=self.java_home, heap=self.heap)

    def _process(self, layout: ClusterLayout, node_id: int) -> NodeProcess:
        return self._process_at(node_id, layout.node_dir(self.data_dir, node_id))

    def _process_at(self, node_id: int, folder: Path) -> NodeProcess:
        """The one NodeProcess object of a node folder, so a launched JVM can be reaped."""
        if folder not in self._processes:
            self._processes[folder] = NodeProcess(node_id, folder)
        return self._processes[folder]

    def _refuse_if_running(self) -> None:
        layout = self.layout()
        if layout is None:
            # An incomplete one-node record, as older versions could leave.
            pid = self._process_at(1, self.data_dir).pid()
            if pid is not None:
                port = read_single(self.data_dir).get("port")
                raise BrokerAlreadyRunning(str(self.data_dir), pid, f"{HOST}:{port}")
            return
        for node in layout.nodes:
            pid = self._process(layout, node.id).pid()
            if pid is not None:
                raise BrokerAlreadyRunning(str(self.data_dir), pid, layout.bootstrap)

    def _tls(self, layout: ClusterLayout, *, new: bool) -> BrokerTls | None:
        if layout.security == "plaintext":
            return None
        files = self._security
        password = files.ensure(layout.bootstrap, new=new)
        return BrokerTls(files.broker_pem, files.ca_cert, USERNAME, password)

    @staticmethod
    def _server_properties(layout: ClusterLayout, proc: NodeProcess, tls: BrokerTls | None) -> str:
        return server_properties(layout=layout, node_id=proc.node_id, log_dir=proc.log_dir, tls=tls)

    @staticmethod
    def _format(
        jvm: Jvm, procs: list[NodeProcess], layout: ClusterLayout, tls: BrokerTls | None
    ) -> None:
        """Format the nodes' storage in parallel; every node gets the same SCRAM user."""
        scram = None if tls is None else scram_credential(tls.password)
        running = [(proc, proc.start_format(jvm, layout.cluster_id, scram)) for proc in procs]
        try:
            for proc, fmt in running:
                finish_format(proc, fmt)
        finally:
            for _, fmt in running:
                with contextlib.suppress(OSError):
                    fmt.kill()
                fmt.wait()

    def _info(self, layout: ClusterLayout) -> ClusterInfo:
        nodes = tuple(
            NodeInfo(n.id, n.port, self._process(layout, n.id).pid()) for n in layout.nodes
        )
        client_config = {"bootstrap.servers": layout.bootstrap}
        properties = None
        if layout.security != "plaintext":
            properties = self._security.client_properties
            with contextlib.suppress(OSError):
                client_config = {**read_properties(properties), **client_config}
        return ClusterInfo(
            self.data_dir, layout.cluster_id, layout.security, nodes, client_config, properties
        )
