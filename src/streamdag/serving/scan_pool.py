"""Threads of the web view's own for reading Kafka, apart from the loop's default executor.

A request search or a figures snapshot reads Kafka for up to seconds. Run with
``asyncio.to_thread``, they would take the default executor's few threads
(``min(32, CPUs + 4)``), in which the served models' batchers run ``predict``: thirty
searches at once held a 7 ms inference for 2 s. A ``ScanPool`` runs them on at most
``workers`` threads of its own, first come first served; the rest wait in its queue, and
``waiting`` tells how many do, for the caller to turn work away when the queue is long.

Threads start when work arrives and end as soon as the queue is empty, so an idle pool
holds no thread and needs no shutdown: once its server stops taking requests, the reads
in flight finish and their threads end. A read cannot be cancelled once it runs; one whose
caller gave up before it started is skipped.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["ScanPool"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class ScanPool:
    """At most ``workers`` threads named ``<name>-<n>``, each running queued calls until
    the queue is empty."""

    def __init__(self, workers: int, *, name: str) -> None:
        if workers < 1:
            raise ValueError(f"a pool needs at least one worker, not {workers}")
        self.workers = workers
        self.name = name
        self._lock = threading.Lock()
        self._queue: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self._threads = 0
        self._started = 0

    @property
    def waiting(self) -> int:
        """Calls queued and not started yet."""
        return len(self._queue)

    @property
    def threads(self) -> int:
        """Threads running now (at most ``workers``)."""
        return self._threads

    async def run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``fn(*args, **kwargs)`` in a thread of the pool, with the caller's context
        variables (trace context), as ``asyncio.to_thread`` would."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        future: Future[_T] = Future()
        with self._lock:
            self._queue.append((future, call))
            start = self._threads < self.workers
            if start:
                self._threads += 1
                self._started += 1
            name = f"{self.name}-{self._started}"
        if start:
            try:
                threading.Thread(target=self._work, name=name).start()
            except BaseException:  # no thread to be had (the interpreter is exiting)
                with self._lock:
                    self._threads -= 1
                future.cancel()
                raise
        # Cancelling the awaiting task cancels the future: a call not started is skipped.
        return await asyncio.wrap_future(future)

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._threads -= 1
                    return
                future, call = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # its caller went away before it started
            try:
                result = call()
            except BaseException as exc:  # handed to the caller, as executors do
                future.set_exception(exc)
            else:
                future.set_result(result)
