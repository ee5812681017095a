"""The web view's own threads for Kafka reads: bounded, first come first served, and gone
when there is nothing to read."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from streamdag.serving.scan_pool import ScanPool

TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")


def pool_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{name}-")]


def wait_for_no_threads(name: str) -> None:
    deadline = time.monotonic() + 5
    while pool_threads(name) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool_threads(name) == []


def test_runs_at_most_its_workers_at_once_in_order() -> None:
    pool = ScanPool(2, name="test-bounded")
    running = 0
    most = 0
    order: list[int] = []
    lock = threading.Lock()
    go = threading.Event()

    def read(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            order.append(i)
        go.wait(10)
        with lock:
            running -= 1
        return i * 10

    async def main() -> list[int]:
        calls = [asyncio.ensure_future(pool.run(read, i)) for i in range(8)]
        deadline = time.monotonic() + 10
        while not (pool.threads == 2 and pool.waiting == 6) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert pool.threads == 2 and pool.waiting == 6  # two reads run, the rest queue
        go.set()
        return await asyncio.gather(*calls)

    assert asyncio.run(main()) == [i * 10 for i in range(8)]
    assert most <= 2
    # First come, first served: two threads may start neighbours in either order.
    assert sorted(order) == list(range(8)) and all(abs(i - k) <= 1 for k, i in enumerate(order))
    wait_for_no_threads("test-bounded")  # a thread ends just after its last result
    assert pool.waiting == 0 and pool.threads == 0


def test_errors_reach_the_caller_and_context_travels() -> None:
    pool = ScanPool(1, name="test-errors")

    def fail() -> None:
        raise LookupError("no such record")

    async def main() -> str:
        with pytest.raises(LookupError, match="no such record"):
            await pool.run(fail)
        TENANT.set("acme")
        return await pool.run(TENANT.get)

    assert asyncio.run(main()) == "acme"
    wait_for_no_threads("test-errors")


def test_a_call_whose_caller_left_before_it_started_is_skipped() -> None:
    pool = ScanPool(1, name="test-cancel")
    release = threading.Event()
    ran: list[str] = []

    def block() -> None:
        release.wait(5)
        ran.append("block")

    def never() -> None:
        ran.append("never")

    async def main() -> None:
        first = asyncio.ensure_future(pool.run(block))
        second = asyncio.ensure_future(pool.run(never))
        await asyncio.sleep(0.01)
        second.cancel()
        await asyncio.sleep(0.01)  # the cancellation reaches the queue on the next turns
        release.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await second

    asyncio.run(main())
    wait_for_no_threads("test-cancel")
    assert ran == ["block"]


def test_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        ScanPool(0, name="none")
