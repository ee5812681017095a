"""Bounds on waiting: one ``Deadline`` shared by every step of a path that must end in
time (the revoke path), and model calls with a timeout that notice when they hang.

A Python thread cannot be killed. A model call that outlives its timeout keeps its thread
(and whatever the model holds) until it returns, if ever. A call that is merely slow
returns soon after; one still running at twice its timeout (and at least a second past
it) is taken as hung. ``TimedCalls`` counts hung calls; once ``max_hung`` of them are
still running, the worker is no longer healthy, and ``ModelHung`` tells it to leave its
group and exit, so its supervisor starts a fresh process and the batch is redone by
whoever owns the partitions next.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from streamdag.errors import DeadlineExceeded, ModelHung

__all__ = ["Deadline", "TimedCalls"]

T = TypeVar("T")


class Deadline:
    """A point in time (monotonic) that several waits share: each takes what is left."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.at = clock() + seconds

    def left(self, at_most: float | None = None) -> float:
        """Seconds left (never negative), capped at ``at_most``."""
        left = max(self.at - self._clock(), 0.0)
        return left if at_most is None else min(left, at_most)

    @property
    def passed(self) -> bool:
        return self._clock() >= self.at


class TimedCalls:
    """Runs calls on threads of their own, waiting at most ``timeout_s`` for each.

    A call past its timeout raises ``DeadlineExceeded`` to the caller and is left running
    on a daemon thread (so it never holds the process open). While ``max_hung`` or more
    calls are hung, every call raises ``ModelHung`` instead.
    """

    def __init__(
        self,
        what: str,
        timeout_s: float,
        max_hung: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.timeout_s = timeout_s
        self.max_hung = max_hung
        self.hung_after_s = max(2 * timeout_s, timeout_s + 1.0)
        self._clock = clock
        self._late: dict[threading.Thread, float] = {}  # past their timeout: when started
        self._lock = threading.Lock()

    @property
    def hung(self) -> int:
        """Calls still running ``hung_after_s`` after they started."""
        now = self._clock()
        with self._lock:
            self._late = {t: at for t, at in self._late.items() if t.is_alive()}
            return sum(1 for at in self._late.values() if now - at >= self.hung_after_s)

    def call(self, fn: Callable[[], T]) -> T:
        if self.hung >= self.max_hung:
            raise ModelHung(self.what, self.hung, self.timeout_s)
        box: list[T] = []
        failures: list[BaseException] = []

        def target() -> None:
            try:
                box.append(fn())
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=target, name=f"call-{self.what}", daemon=True)
        started = self._clock()
        thread.start()
        thread.join(self.timeout_s)
        if thread.is_alive():
            with self._lock:
                self._late[thread] = started
            if self.hung >= self.max_hung:
                raise ModelHung(self.what, self.hung, self.timeout_s)
            raise DeadlineExceeded(f"{self.what} did not answer within {self.timeout_s:g}s")
        if failures:
            raise failures[0]
        return box[0]
