"""`run --processes N`'s parent, with plain processes for children: restarts with back-off,
gives up on a child that keeps dying, stops them all."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

import pytest

from streamdag.engine.supervisor import Backoff, Supervisor

SLEEPER = [
    sys.executable,
    "-c",
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "time.sleep(120)",
]


def test_backoff_doubles_resets_after_a_healthy_run_and_gives_up() -> None:
    backoff = Backoff(first_s=1, max_s=4, healthy_after_s=60, max_failures=5)
    assert [backoff.died(0.5) for _ in range(4)] == [1, 2, 4, 4]
    assert backoff.died(120) == 1  # it had run a while: a fresh start
    for _ in range(3):
        backoff.died(0.1)
    assert backoff.died(0.1) is None


def test_a_child_that_keeps_dying_ends_the_parent_with_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    supervisor = Supervisor(
        2, lambda k: failing, backoff=lambda: Backoff(first_s=0.05, max_failures=3), grace_s=5
    )
    with caplog.at_level(logging.INFO, "streamdag.engine.supervisor"):
        started = time.monotonic()
        assert supervisor.run() == 1
    assert time.monotonic() - started < 20
    assert "died with exit code 3; restarting it in 0 s" in caplog.text
    assert "3 times in a row; giving up" in caplog.text


def test_a_killed_child_is_replaced_and_stop_ends_them_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = Supervisor(2, lambda k: SLEEPER, backoff=lambda: Backoff(first_s=0.1))
    killed: list[int] = []

    def chaos() -> None:
        deadline = time.monotonic() + 10
        while len(supervisor.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = supervisor.pids()[0]
        killed.append(victim)
        os.kill(victim, signal.SIGKILL)
        while supervisor.children[0].history[-1] == victim and time.monotonic() < deadline:
            time.sleep(0.05)
        supervisor.stop()

    thread = threading.Thread(target=chaos)
    with caplog.at_level(logging.INFO, "streamdag.engine.supervisor"):
        thread.start()
        assert supervisor.run() == 0  # the children stopped cleanly on SIGTERM
    thread.join()
    first = supervisor.children[0]
    assert first.history[0] == killed[0] and len(first.history) == 2
    assert "died of SIGKILL; restarting it in 0 s" in caplog.text
    for child in supervisor.children:
        assert child.process is not None and child.process.poll() in (0, -signal.SIGTERM)
