"""Start, stop and query a local Apache Kafka (KRaft) broker for development, tests and demos.

The broker is one JVM running ``kafka.Kafka`` from the jars fetched by ``make setup``. A data
dir holds everything about one broker:

    <data-dir>/server.properties   written on first start, ports kept across restarts
    <data-dir>/log4j2.properties
    <data-dir>/broker.json         ports and cluster id
    <data-dir>/broker.pid          pid of the running JVM (removed on a clean stop)
    <data-dir>/broker.log          the broker's own log (stdout/stderr in broker.out)
    <data-dir>/kraft/              KRaft metadata and topic data, kept across restarts
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from streamdag.broker.config import log4j2_properties, server_properties
from streamdag.broker.readiness import wait_until_ready
from streamdag.errors import (
    BrokerAlreadyRunning,
    BrokerNotRunning,
    BrokerStartFailed,
    JavaNotFound,
    KafkaJarsMissing,
    PortInUse,
)

__all__ = ["BrokerInfo", "LocalBroker", "free_port"]

DEFAULT_PORT = 9092


@dataclass(frozen=True)
class BrokerInfo:
    pid: int
    port: int
    data_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: a port left in TIME_WAIT by our own previous broker is free to use.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is not running.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64, never starting with ``-``.

    Kafka's own ``Uuid.randomUuid`` draws again for a leading ``-`` so the id cannot be taken
    for a command-line option; so does this.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


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
        self.data_dir = data_dir.resolve()
        self.libs_dir = libs_dir
        self.java_home = java_home
        self.heap = heap
        self._proc: subprocess.Popen[bytes] | None = None

    # -- files -------------------------------------------------------------------------
    @property
    def _pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def _meta_file(self) -> Path:
        return self.data_dir / "broker.json"

    @property
    def _props_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    def _read_meta(self) -> dict[str, object]:
        try:
            meta: dict[str, object] = json.loads(self._meta_file.read_text())
        except (OSError, ValueError):
            return {}
        return meta

    # -- queries -----------------------------------------------------------------------
    def status(self) -> BrokerInfo | None:
        """The running broker of this data dir, or None."""
        try:
            pid = int(self._pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _pid_alive(pid) or not self._is_our_process(pid):
            return None
        port = self._read_meta().get("port")
        return BrokerInfo(
            pid=pid, port=int(port) if isinstance(port, int) else 0, data_dir=self.data_dir
        )

    def _is_our_process(self, pid: int) -> bool:
        """Guards against a stale pid file whose pid now belongs to another program."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return str(self._props_file) in cmdline

    # -- start -------------------------------------------------------------------------
    def _java(self) -> str:
        if self.java_home is not None:
            candidate = self.java_home / "bin" / "java"
            if candidate.is_file():
                return str(candidate)
        found = shutil.which("java")
        if found is None:
            raise JavaNotFound()
        return found

    def _classpath(self) -> str:
        if not any(self.libs_dir.glob("kafka_2.13-*.jar")):
            raise KafkaJarsMissing(str(self.libs_dir))
        return str(self.libs_dir / "*")

    def start(self, *, port: int | None = None, timeout: float = 60.0) -> BrokerInfo:
        """Start the broker (formatting storage on first use) and wait until it is ready."""
        running = self.status()
        if running is not None:
            raise BrokerAlreadyRunning(str(self.data_dir), running.pid, running.bootstrap)
        java = self._java()
        classpath = self._classpath()
        self.data_dir.mkdir(parents=True, exist_ok=True)

        meta = self._read_meta()
        stored_port = meta.get("port")
        if port is None:
            port = stored_port if isinstance(stored_port, int) else DEFAULT_PORT
        if not _port_free(port):
            raise PortInUse(port)
        controller_port = meta.get("controller_port")
        while (
            not isinstance(controller_port, int)
            or controller_port == port
            or not _port_free(controller_port)
        ):
            # Nothing listens on ``port`` yet, so a free port may be that one: pick again.
            controller_port = free_port()
        cluster_id = meta.get("cluster_id")
        first_start = not isinstance(cluster_id, str)
        if not isinstance(cluster_id, str):
            cluster_id = new_cluster_id()

        self._props_file.write_text(
            server_properties(data_dir=self.data_dir, port=port, controller_port=controller_port)
        )
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(log4j2_properties(log_file=self.log_file))
        jvm = [
            java,
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            classpath,
        ]
        if first_start or not (self.data_dir / "kraft" / "meta.properties").exists():
            self._format(jvm, cluster_id)
        self._meta_file.write_text(
            json.dumps({"port": port, "controller_port": controller_port, "cluster_id": cluster_id})
        )

        if self._proc is not None:
            self._proc.poll()  # reap a broker of this launcher that died (e.g. SIGKILL)
        out = (self.data_dir / "broker.out").open("ab")
        try:
            self._proc = subprocess.Popen(
                [*jvm, "kafka.Kafka", str(self._props_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            out.close()
        self._pid_file.write_text(str(self._proc.pid))
        info = BrokerInfo(pid=self._proc.pid, port=port, data_dir=self.data_dir)
        try:
            wait_until_ready(info.bootstrap, timeout=timeout, alive=self._alive)
        except BrokerStartFailed as exc:
            self._kill()
            raise BrokerStartFailed(f"{exc}\n{self._log_tail()}") from None
        return info

    def _format(self, jvm: list[str], cluster_id: str) -> None:
        result = subprocess.run(
            [
                *jvm,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(self._props_file),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise BrokerStartFailed("formatting KRaft storage failed: " + " | ".join(detail))

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _log_tail(self, lines: int = 15) -> str:
        chunks = []
        for name in ("broker.out", "broker.log"):
            with contextlib.suppress(OSError):
                text = (self.data_dir / name).read_text(errors="replace").splitlines()
                chunks.extend(text[-lines:])
        return "\n".join(chunks)

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._pid_file.unlink(missing_ok=True)

    # -- stop --------------------------------------------------------------------------
    def stop(self, *, timeout: float = 30.0) -> BrokerInfo:
        """SIGTERM the broker and wait for a clean shutdown; SIGKILL if it does not come."""
        info = self.status()
        if info is None:
            self._pid_file.unlink(missing_ok=True)
            raise BrokerNotRunning(str(self.data_dir))
        os.kill(info.pid, signal.SIGTERM)
        if not self._wait_exit(info.pid, timeout):
            os.kill(info.pid, signal.SIGKILL)
            self._wait_exit(info.pid, 10.0)
        self._pid_file.unlink(missing_ok=True)
        return info

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                if self._proc.poll() is not None:
                    return True
            elif not _pid_alive(pid):
                return True
            time.sleep(0.1)
        return False
