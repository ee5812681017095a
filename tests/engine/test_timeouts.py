"""The revoke path's shared deadline, and model calls that notice when they hang."""

from __future__ import annotations

import threading
import time

import pytest

from streamdag.engine.timeouts import Deadline, TimedCalls
from streamdag.errors import DeadlineExceeded, ModelHung


def test_every_wait_takes_what_is_left_of_one_deadline() -> None:
    now = [100.0]
    deadline = Deadline(10.0, clock=lambda: now[0])
    assert deadline.left() == 10.0
    assert deadline.left(at_most=3.0) == 3.0
    now[0] = 108.0
    assert deadline.left() == pytest.approx(2.0)
    assert deadline.left(at_most=3.0) == pytest.approx(2.0)
    assert not deadline.passed
    now[0] = 111.0
    assert deadline.left() == 0.0
    assert deadline.passed


def test_a_call_in_time_returns_its_result_or_raises_its_error() -> None:
    calls = TimedCalls("model m", timeout_s=5.0, max_hung=2)
    assert calls.call(lambda: 42) == 42

    def fail() -> int:
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        calls.call(fail)
    assert calls.hung == 0


def test_a_late_call_fails_its_request_but_is_hung_only_long_past_its_timeout() -> None:
    now = [0.0]
    release = threading.Event()
    calls = TimedCalls("model m", timeout_s=0.05, max_hung=2, clock=lambda: now[0])
    try:
        with pytest.raises(DeadlineExceeded, match=r"model m did not answer within 0\.05s"):
            calls.call(release.wait)
        assert calls.hung == 0  # late, maybe just slow
        now[0] = calls.hung_after_s
        assert calls.hung == 1
    finally:
        release.set()


def test_enough_hung_calls_say_the_worker_must_go_until_they_return() -> None:
    now = [0.0]
    release = threading.Event()
    calls = TimedCalls("model m", timeout_s=0.05, max_hung=2, clock=lambda: now[0])
    try:
        for _ in range(2):
            with pytest.raises(DeadlineExceeded):
                calls.call(release.wait)
        now[0] = 10.0
        with pytest.raises(ModelHung, match=r"2 calls still running long past their 0\.05s"):
            calls.call(lambda: 1)  # even a quick call is refused: it would only pile up
    finally:
        release.set()
    # The hung calls returned at last: their threads are gone, and calls run again.
    deadline = time.monotonic() + 5
    while calls.hung and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls.call(lambda: 7) == 7


def test_a_slow_call_that_returns_after_its_timeout_is_never_hung() -> None:
    calls = TimedCalls("model m", timeout_s=0.05, max_hung=1)
    with pytest.raises(DeadlineExceeded):
        calls.call(lambda: time.sleep(0.2))
    time.sleep(0.4)
    assert calls.hung == 0
    assert calls.call(lambda: "ok") == "ok"


def test_a_hung_call_does_not_keep_the_process_alive() -> None:
    release = threading.Event()
    calls = TimedCalls("model m", timeout_s=0.01, max_hung=5)
    with pytest.raises(DeadlineExceeded):
        calls.call(release.wait)
    hung = [t for t in threading.enumerate() if t.name == "call-model m"]
    assert hung and all(t.daemon for t in hung)
    release.set()
