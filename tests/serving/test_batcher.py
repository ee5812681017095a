"""Adaptive batching, without a server: what ``predict`` sees and what each caller gets."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any

import numpy as np
import pytest

from streamdag.errors import InvalidInput, ModelError
from streamdag.protocol.datatypes import Arrays
from streamdag.runtimes import BatchConfig
from streamdag.serving import AdaptiveBatcher
from streamdag.serving.batcher import INLINE_S


class Recorder:
    """predict = 10 * x; records the rows of each call; rows holding -1 make it raise."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[int] = []
        self.error = error or ValueError("poison row")
        self.lock = threading.Lock()

    def __call__(self, inputs: Arrays) -> Arrays:
        with self.lock:
            self.calls.append(len(inputs["x"]))
        if (inputs["x"] == -1).any():
            raise self.error
        return {"y": inputs["x"] * 10}


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def rows(*values: float, width: int = 2) -> Arrays:
    return {"x": np.array([[v] * width for v in values], dtype=np.float32)}


async def burst(batcher: AdaptiveBatcher, requests: list[Arrays]) -> list[Any]:
    return await asyncio.gather(*(batcher.run(r) for r in requests), return_exceptions=True)


def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    predict = Recorder()
    batcher = AdaptiveBatcher("m", predict, BatchConfig(max_size=64, max_wait_ms=50))
    requests = [rows(i, i + 0.5) for i in range(8)]
    results = run(burst(batcher, requests))
    assert predict.calls == [16]
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], request["x"] * 10)


def test_max_size_caps_the_requests_of_one_call() -> None:
    predict = Recorder()
    batcher = AdaptiveBatcher("m", predict, BatchConfig(max_size=3, max_wait_ms=50))
    results = run(burst(batcher, [rows(i) for i in range(7)]))
    assert sorted(predict.calls) == [1, 3, 3]
    assert [float(r["y"][0, 0]) for r in results] == [i * 10.0 for i in range(7)]


def test_incompatible_shapes_and_dtypes_run_as_separate_calls() -> None:
    predict = Recorder()
    batcher = AdaptiveBatcher("m", predict, BatchConfig(max_size=64, max_wait_ms=50))
    narrow = [rows(1), rows(2)]
    wide = [rows(3, width=5), rows(4, width=5)]
    ints = [{"x": np.array([[5, 5]], dtype=np.int64)}]
    results = run(burst(batcher, [narrow[0], wide[0], ints[0], narrow[1], wide[1]]))
    assert sorted(predict.calls) == [1, 2, 2]
    assert results[1]["y"].shape == (1, 5) and results[2]["y"].dtype == np.int64
    np.testing.assert_array_equal(results[3]["y"], narrow[1]["x"] * 10)


def test_a_failing_request_fails_alone_and_its_neighbours_succeed() -> None:
    predict = Recorder()
    batcher = AdaptiveBatcher("m", predict, BatchConfig(max_size=64, max_wait_ms=50))
    results = run(burst(batcher, [rows(1), rows(-1), rows(3)]))
    assert isinstance(results[1], ModelError)
    assert "model m: ValueError: poison row" in str(results[1])
    assert float(results[0]["y"][0, 0]) == 10.0 and float(results[2]["y"][0, 0]) == 30.0
    # One batched call that failed, then each request on its own.
    assert predict.calls[0] == 3 and sorted(predict.calls[1:]) == [1, 1, 1]


def test_streamdag_errors_reach_the_caller_unchanged() -> None:
    predict = Recorder(error=InvalidInput("model m: input 'x' is odd"))
    batcher = AdaptiveBatcher("m", predict, BatchConfig(max_size=1, max_wait_ms=0))
    with pytest.raises(InvalidInput, match="input 'x' is odd"):
        run(batcher.run(rows(-1)))


def test_a_model_returning_the_wrong_number_of_rows_is_a_model_error() -> None:
    def short(inputs: Arrays) -> Arrays:
        return {"y": inputs["x"][:1]}

    batcher = AdaptiveBatcher("m", short, BatchConfig(max_size=1, max_wait_ms=0))
    with pytest.raises(ModelError, match="output 'y' has 1 rows for a batch of 2"):
        run(batcher.run(rows(1, 2)))


def test_drain_waits_for_queued_and_running_batches() -> None:
    predict = Recorder()
    batcher = AdaptiveBatcher("m", predict, BatchConfig(max_size=64, max_wait_ms=60_000))

    async def scenario() -> Any:
        pending = asyncio.ensure_future(batcher.run(rows(7)))
        await asyncio.sleep(0)  # queued, waiting for the (long) batching window
        await batcher.drain()
        assert pending.done()
        return pending.result()

    assert float(run(scenario())["y"][0, 0]) == 70.0
    assert predict.calls == [1]


def test_a_caller_that_gave_up_is_not_run() -> None:
    predict = Recorder()
    batcher = AdaptiveBatcher("m", predict, BatchConfig(max_size=64, max_wait_ms=20))

    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.run(rows(1)), 0.001)
        await asyncio.sleep(0.05)
        await batcher.drain()

    run(scenario())
    assert predict.calls == []


def test_a_fast_model_runs_on_the_event_loop_and_a_slow_one_in_a_thread() -> None:
    """After its first call (in a thread, untimed until then), a model whose calls take
    under INLINE_S runs on the loop's own thread; one slow call sends it back."""
    threads: list[int] = []
    slow = threading.Event()

    def predict(inputs: Arrays) -> Arrays:
        threads.append(threading.get_ident())
        if slow.is_set():
            time.sleep(INLINE_S * 4)
        return {"y": inputs["x"] * 10}

    batcher = AdaptiveBatcher("m", predict, BatchConfig(max_size=64, max_wait_ms=0))

    async def scenario() -> int:
        for value in range(3):
            await batcher.run(rows(value))
        slow.set()
        await batcher.run(rows(3))  # on the loop, and slow
        await batcher.run(rows(4))  # so this one goes to a thread again
        return threading.get_ident()

    loop_thread = run(scenario())
    assert [t == loop_thread for t in threads] == [False, True, True, True, False]
    assert not batcher.inline
