"""`run --processes N`'s parent, with plain processes for children: restarts with back-off,
gives up on a child that keeps dying, stops them all."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
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


PARENT = """
import sys, threading, time
from streamdag.engine.supervisor import Supervisor

supervisor = Supervisor(2, lambda k: SLEEPER)

def report() -> None:
    while len(supervisor.pids()) < 2:
        time.sleep(0.05)
    print(*supervisor.pids(), flush=True)

threading.Thread(target=report, daemon=True).start()
sys.exit(supervisor.run())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_no_child_outlives_a_parent_killed_with_sigkill() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", f"SLEEPER = {SLEEPER!r}\n{PARENT}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if _alive(p)], "a worker outlived its supervisor"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) is not running any more.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[-1][0] != "Z"


BUSY_PARENT = """
import logging, sys, threading
from concurrent import futures

import grpc

from streamdag.engine.supervisor import Backoff, Supervisor

# gRPC threads at work in the parent, as in `streamdag serve` or a test process.
server = grpc.server(futures.ThreadPoolExecutor(4))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
stop = threading.Event()

def connect() -> None:
    while not stop.is_set():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
            except grpc.FutureTimeoutError:
                pass

callers = [threading.Thread(target=connect) for _ in range(3)]
for caller in callers:
    caller.start()
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
supervisor = Supervisor(4, lambda k: failing, backoff=lambda: Backoff(first_s=0, max_failures=10))
code = supervisor.run()
stop.set()
for caller in callers:
    caller.join()
server.stop(0)
sys.exit(code)
"""


def test_children_start_cleanly_while_the_parent_is_busy_in_grpc() -> None:
    """About 40 children started while gRPC threads work in the parent: each runs its command
    (exit code 3), none dies in between of a signal (a fork of the parent's threads'
    state, as ``preexec_fn`` makes, crashed some with SIGABRT or SIGSEGV)."""
    done = subprocess.run(
        [sys.executable, "-c", BUSY_PARENT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr  # gave up after 10 deaths each
    deaths = [line for line in done.stdout.splitlines() if " died " in line]
    assert len(deaths) >= 37, done.stdout  # it gives up at the first to die 10 times
    assert all("died with exit code 3" in line for line in deaths), deaths
