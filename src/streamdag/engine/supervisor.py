"""``streamdag run --processes N``: N worker processes of the same steps under one parent.

Each child is a ``streamdag run`` of its own, so each is its own member of every step's
consumer group and uses a core of its own (one Python process is bound by its GIL). The
parent keeps nothing but the children:

    SIGTERM / SIGINT      forwarded to every child; the parent waits for them, then exits
                          0 if they all stopped cleanly
    a child dies          restarted after a back-off (1 s, doubling up to 30 s), with a
                          log line naming its exit status; a child that ran for a minute
                          starts again from the shortest back-off
    a child keeps dying   ``max_failures`` deaths in a row, each within a minute of its
                          start: the parent stops the others and exits 1

A restarted child takes its predecessor's instance id (``<id>-<k>``), so its
transactions fence the dead one's at once. On Linux a child is sent SIGTERM when the
parent dies, even of SIGKILL, so no worker outlives its supervisor.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

__all__ = ["Backoff", "Supervisor"]

log = logging.getLogger("streamdag.engine.supervisor")

_PR_SET_PDEATHSIG = 1


# Runs first in each child, in a small interpreter of its own, then becomes the child's
# command (same process): SIGTERM when the parent dies. Not ``preexec_fn``: that makes
# the parent fork() rather than vfork(), and fork handlers of libraries with threads
# (gRPC's, for one) then run in the child and can abort it before its command starts.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    f"ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG}, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"  # the parent died before the request
    "    os.kill(os.getpid(), signal.SIGTERM)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def _dying_with(parent: int, command: list[str]) -> list[str]:
    """``command``, to be sent SIGTERM when ``parent`` dies (on Linux; elsewhere as is)."""
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-I", "-S", "-c", _DIE_WITH_PARENT, str(parent), *command]


@dataclass
class Backoff:
    """When to restart a child that died, and when to give up on it."""

    first_s: float = 1.0
    max_s: float = 30.0
    healthy_after_s: float = 60.0  # a child that lived this long resets the count
    max_failures: int = 5
    failures: int = 0

    def died(self, lived_s: float) -> float | None:
        """The wait before the next start, or None to give up."""
        self.failures = 1 if lived_s >= self.healthy_after_s else self.failures + 1
        if self.failures >= self.max_failures:
            return None
        return float(min(self.max_s, self.first_s * 2 ** (self.failures - 1)))


@dataclass
class _Child:
    slot: int
    command: list[str]
    backoff: Backoff
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float | None = None
    history: list[int] = field(default_factory=list)  # pids, oldest first


class Supervisor:
    """Runs ``command_for(k)`` for k in 0..count-1 until stopped; see the module docstring."""

    def __init__(
        self,
        count: int,
        command_for: Callable[[int], list[str]],
        *,
        backoff: Callable[[], Backoff] = Backoff,
        grace_s: float = 60.0,
    ) -> None:
        self.children = [_Child(k, command_for(k), backoff()) for k in range(count)]
        self.grace_s = grace_s
        self._stop = threading.Event()
        # Set by the signal handler, which must take no lock: the handler runs between two
        # bytecodes of the main thread, which may hold the Event's own lock at that moment.
        self._signalled = False

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Start the children and look after them until ``stop``; the exit status."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for child in self.children:
                self._start(child)
            failed = self._watch()
        finally:
            stopped_cleanly = self._stop_children()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return 1 if failed or not stopped_cleanly else 0

    def pids(self) -> list[int]:
        return [c.process.pid for c in self.children if c.process is not None]

    # -- internals ---------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping %d worker processes", signum, len(self.children))
        self._signalled = True

    def _start(self, child: _Child) -> None:
        child.process = subprocess.Popen(_dying_with(os.getpid(), child.command))
        child.started = time.monotonic()
        child.restart_at = None
        child.history.append(child.process.pid)
        log.info("worker process %d started: pid %d", child.slot, child.process.pid)

    def _watch(self) -> bool:
        """Until stopped: restart children that died. True if one kept dying."""
        while not (self._signalled or self._stop.is_set()):
            time.sleep(0.2)
            now = time.monotonic()
            for child in self.children:
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        self._start(child)
                    continue
                assert child.process is not None
                status = child.process.poll()
                if status is None:
                    continue
                wait = child.backoff.died(now - child.started)
                if wait is None:
                    log.error(
                        "worker process %d (pid %d) died %s, %d times in a row; giving up",
                        child.slot,
                        child.process.pid,
                        _status(status),
                        child.backoff.failures,
                    )
                    return True
                log.warning(
                    "worker process %d (pid %d) died %s; restarting it in %.0f s",
                    child.slot,
                    child.process.pid,
                    _status(status),
                    wait,
                )
                child.restart_at = now + wait
        return False

    def _stop_children(self) -> bool:
        """SIGTERM every child, wait up to ``grace_s``, SIGKILL what is left. True if each
        running child exited 0, or of the SIGTERM itself."""
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        clean = True
        for process in running:
            try:
                # A child still starting has no handler yet: SIGTERM ends it at once, as asked.
                code = process.wait(max(0.0, deadline - time.monotonic()))
                clean &= code in (0, -signal.SIGTERM)
            except subprocess.TimeoutExpired:
                log.warning("worker process pid %d did not stop in time: killed", process.pid)
                process.kill()
                process.wait()
                clean = False
        return clean


def _status(code: int) -> str:
    if code < 0:
        try:
            return f"of {signal.Signals(-code).name}"
        except ValueError:
            return f"of signal {-code}"
    return f"with exit code {code}"
