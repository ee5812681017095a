"""Why a client could not talk to Kafka, in one line that names the setting to fix.

librdkafka reports connection trouble through its error callback while a call such as
``list_topics`` waits, then the call fails with a bare time-out. ``Diagnosis`` collects
those reports; ``explain`` turns the most telling one into a sentence for people.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from confluent_kafka import KafkaError as ClientError

from streamdag.kafka.connection import KafkaConnection

__all__ = ["Diagnosis"]

# From the most to the least telling: an authentication failure explains a later
# "all brokers down", never the other way round.
_RANK = {
    ClientError._AUTHENTICATION: 0,
    ClientError._SSL: 1,
    ClientError._TRANSPORT: 2,
    ClientError._RESOLVE: 3,
    ClientError._ALL_BROKERS_DOWN: 4,
}


class Diagnosis:
    """An ``error_cb`` for a client's config that remembers what went wrong."""

    def __init__(self, kafka: KafkaConnection) -> None:
        self.kafka = kafka
        self._lock = threading.Lock()
        self._worst: tuple[int, int, str] | None = None  # rank, code, text

    def __call__(self, error: Any) -> None:
        code = error.code()
        rank = _RANK.get(code, 9)
        with self._lock:
            if self._worst is None or rank < self._worst[0]:
                self._worst = (rank, code, str(error.str()))

    def config(self) -> dict[str, Any]:
        return {"error_cb": self}

    @property
    def conclusive(self) -> bool:
        """Whether what was reported will not mend by waiting: the broker refused the
        credentials or its certificate is not trusted."""
        with self._lock:
            worst = self._worst
        if worst is None:
            return False
        _, code, text = worst
        return code == ClientError._AUTHENTICATION or _untrusted(text.lower())

    def explain(self, failure: str) -> str:
        """One line: what failed (``failure``) and, when librdkafka said why, the cause
        and the setting that fixes it. Never holds a secret."""
        with self._lock:
            worst = self._worst
        where = f"cannot reach Kafka at {self.kafka}"
        if worst is None:
            return f"{where}: {failure}"
        _, code, text = worst
        lowered = text.lower()
        protocol = self.kafka.security_protocol
        if code == ClientError._AUTHENTICATION or "authentication" in lowered:
            user = self.kafka.properties.get("sasl.username", "")
            return (
                f"{where}: authentication failed for sasl.username={user or '(unset)'} "
                f"with sasl.mechanism={self.kafka.properties.get('sasl.mechanism', 'GSSAPI')}: "
                "check sasl.username and sasl.password"
            )
        if _untrusted(lowered):
            ca = self.kafka.properties.get("ssl.ca.location")
            return (
                f"{where}: the broker's TLS certificate is not trusted "
                f"(ssl.ca.location={ca or 'unset: the system CAs'}): set ssl.ca.location to "
                "the CA that signed it"
            )
        if code == ClientError._SSL or ("ssl" in lowered and "handshake" in lowered):
            return (
                f"{where}: TLS handshake failed ({_short(text)}): check security.protocol "
                f"(now {protocol}) and the ssl.* settings"
            )
        plaintext = protocol in ("PLAINTEXT", "SASL_PLAINTEXT")
        if "security.protocol" in lowered or (
            plaintext
            and ("disconnected" in lowered or code == ClientError._ALL_BROKERS_DOWN)
            and _listens(self.kafka.bootstrap_servers)
        ):
            return (
                f"{where}: the broker closed the connection at once; security.protocol is "
                f"{protocol}: does the listener expect SSL or SASL_SSL?"
            )
        if code == ClientError._RESOLVE or "resolve" in lowered:
            return f"{where}: cannot resolve the host of bootstrap.servers ({_short(text)})"
        if "connection refused" in lowered or code == ClientError._ALL_BROKERS_DOWN:
            return (
                f"{where}: no broker answers at bootstrap.servers="
                f"{self.kafka.bootstrap_servers} ({_short(text)})"
            )
        return f"{where}: {failure} ({_short(text)})"


def _untrusted(lowered: str) -> bool:
    return "certificate verify failed" in lowered or "unable to get local issuer" in lowered


def _listens(servers: str, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections at the first of ``servers``: a broker
    that closes a plaintext client's connection at once is a TLS listener."""
    host, _, port = servers.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout):
            return True
    except (OSError, ValueError):
        return False


def _short(text: str) -> str:
    """librdkafka's message without its client and thread prefix."""
    return text.split(": ", 1)[1] if text.startswith(("sasl_ssl://", "ssl://")) else text
