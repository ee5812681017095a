"""Adaptive batching for served models: concurrent requests share one ``predict`` call.

A request waits at most ``max_wait_ms`` for others to join it, and a batch holds at most
``max_size`` requests, as in the model's ``batch:`` declaration. Requests whose tensors
cannot be concatenated (other trailing shapes or dtypes) run as separate calls of the
same flush. The grouping, concatenation and splitting are the engine's
(``streamdag.engine.batching``), so a model sees the same micro-batches whether it is
served or run as a pipeline step.

A model call runs in a worker thread, so the event loop keeps serving while it computes;
but once a model's calls typically take under ``INLINE_S``, they run on the event loop
itself: handing such a call to a thread and back (two thread wake-ups, the GIL passed
twice) costs more than the call. Every call is timed, so a model that turns slow goes
back to the thread after one slow call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from streamdag.engine.batching import concat, group_compatible, rows_of, split
from streamdag.errors import ModelError, StreamdagError
from streamdag.protocol.datatypes import Arrays
from streamdag.runtimes import BatchConfig

__all__ = ["INLINE_S", "AdaptiveBatcher", "Predict"]

INLINE_S = 0.0005
"""A model whose calls typically take less (in seconds) runs on the event loop."""

Predict = Callable[[Arrays], Arrays]


@dataclass(frozen=True)
class _Pending:
    inputs: Arrays
    future: asyncio.Future[Arrays]


class AdaptiveBatcher:
    """Queues the requests of one model and runs them in batches in a thread executor.

    ``predict`` is synchronous (``Model.predict``) and may run in several threads at
    once: a new batch starts while the previous one is still running.
    """

    def __init__(self, name: str, predict: Predict, config: BatchConfig) -> None:
        self.name = name
        self._predict = predict
        self._max_size = config.max_size
        self._max_wait = config.max_wait_ms / 1000.0
        self._queue: list[_Pending] = []
        self._timer: asyncio.Handle | None = None
        self._running: set[asyncio.Task[None]] = set()
        # A moving average of the call durations; None until a call has been timed.
        self._typical_s: float | None = None

    async def run(self, inputs: Arrays) -> Arrays:
        """The model's outputs for one request's rows.

        Raises what the model raised for this request: ``StreamdagError`` as is, anything
        else as ``ModelError``.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Arrays] = loop.create_future()
        self._queue.append(_Pending(inputs, future))
        if len(self._queue) >= self._max_size:
            self._flush()
        elif self._timer is None:
            # The first request of a batch starts the clock; later ones do not extend it,
            # so no request waits longer than max_wait_ms.
            if self._max_wait > 0:
                self._timer = loop.call_later(self._max_wait, self._flush)
            else:  # what arrived in this turn of the loop
                self._timer = loop.call_soon(self._flush)
        return await future

    async def drain(self) -> None:
        """Run what is queued now and wait until every batch in flight has finished."""
        self._flush()
        while self._running:
            await asyncio.wait(set(self._running))

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # A caller that gave up (timeout, client gone) cancelled its future: skip it.
        batch = [p for p in self._queue if not p.future.done()]
        self._queue = []
        if not batch:
            return
        if self.inline:  # no task, no thread: the calls are quicker than either
            _settle(batch, self._outcomes(batch))
            return
        task = asyncio.get_running_loop().create_task(self._execute(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _execute(self, batch: list[_Pending]) -> None:
        _settle(batch, await asyncio.to_thread(self._outcomes, batch))

    def _outcomes(self, batch: list[_Pending]) -> list[Arrays | StreamdagError]:
        """Each request's outputs or error. Each compatible group runs as one call; when
        it fails, each request of the group runs on its own, so one bad request does not
        fail its neighbours: only the culprit gets the error."""
        outcomes: list[Arrays | StreamdagError] = [{}] * len(batch)  # all replaced
        for group in group_compatible([p.inputs for p in batch]):
            if len(group) > 1:
                members = [batch[i].inputs for i in group]
                try:
                    parts = split(self._timed(concat(members)), [rows_of(m) or 0 for m in members])
                except Exception:
                    pass
                else:
                    for i, part in zip(group, parts, strict=True):
                        outcomes[i] = part
                    continue
            for i in group:
                outcomes[i] = self._alone(batch[i].inputs)
        return outcomes

    def _alone(self, inputs: Arrays) -> Arrays | StreamdagError:
        try:
            outputs = self._timed(inputs)
            rows = rows_of(inputs)
            return outputs if rows is None else split(outputs, [rows])[0]
        except StreamdagError as exc:
            return exc
        except Exception as exc:
            return ModelError(f"model {self.name}: {type(exc).__name__}: {exc}")

    @property
    def inline(self) -> bool:
        """Whether the next call runs on the event loop rather than in a worker thread."""
        return self._typical_s is not None and self._typical_s < INLINE_S

    def _timed(self, inputs: Arrays) -> Arrays:
        started = time.perf_counter()
        try:
            return self._predict(inputs)
        finally:
            took = time.perf_counter() - started
            typical = self._typical_s
            # One slow call weighs enough to move the model back to the thread.
            self._typical_s = took if typical is None else max(took, 0.8 * typical + 0.2 * took)


def _settle(batch: list[_Pending], outcomes: list[Arrays | StreamdagError]) -> None:
    for pending, outcome in zip(batch, outcomes, strict=True):
        if pending.future.done():  # its caller gave up meanwhile
            continue
        if isinstance(outcome, StreamdagError):
            pending.future.set_exception(outcome)
        else:
            pending.future.set_result(outcome)
