"""Ports on 127.0.0.1: is one free, and a free one."""

from __future__ import annotations

import random
import socket
from collections.abc import Collection
from pathlib import Path

__all__ = ["free_port", "free_port_run", "port_free"]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: a port left in TIME_WAIT by our own previous broker is free to use.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_run(count: int = 1, *, avoid: Collection[int] = ()) -> int:
    """The first of ``count`` consecutive free ports, below the ephemeral range.

    A Kafka node binds its client listener only once it has joined the cluster, seconds
    after start; a port in the ephemeral range may meanwhile be handed to an outgoing
    connection (the nodes' own, to each other) and the bind fails. Ports below that range
    are never handed out so.
    """
    high = _ephemeral_low() - count
    for _ in range(200):
        first = random.randrange(20000, high)
        run = range(first, first + count)
        if not set(run) & set(avoid) and all(port_free(p) for p in run):
            return first
    raise OSError(f"no {count} consecutive free ports found between 20000 and {high + count}")
