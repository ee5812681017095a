"""Micro-batching without a broker: grouping, concatenation, splitting and retries."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from streamdag.engine.batching import (
    Arrays,
    Failure,
    RetryPolicy,
    Success,
    concat,
    group_compatible,
    rows_of,
    run_batch,
    split,
)
from streamdag.errors import InvalidInput, ModelError


def fp32(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def req(*values: float) -> Arrays:
    """A request of one FP32 tensor ``x`` with one row per value."""
    return {"x": np.array(values, dtype=np.float32)}


class FakeModel:
    """Doubles ``x``; records every call; fails as configured."""

    def __init__(
        self,
        *,
        poison: float | None = None,
        fail_first: int = 0,
        error: Callable[[str], Exception] = ValueError,
    ) -> None:
        self.poison = poison
        self.fail_first = fail_first
        self.error = error
        self.calls: list[Arrays] = []

    def __call__(self, inputs: Arrays) -> Arrays:
        self.calls.append(inputs)
        if self.poison is not None and np.any(inputs["x"] == self.poison):
            raise self.error(f"poison value {self.poison:g} in x")
        if len(self.calls) <= self.fail_first:
            raise self.error(f"transient failure {len(self.calls)}")
        return {"y": inputs["x"] * 2}


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.retries = 0

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def on_retry(self) -> None:
        self.retries += 1


# -- rows_of ------------------------------------------------------------------------------


def test_rows_of_is_the_shared_first_axis() -> None:
    assert rows_of({"a": np.zeros((3, 2)), "b": np.zeros(3)}) == 3
    assert rows_of({"a": np.zeros((0, 4))}) == 0


def test_rows_of_is_none_for_a_scalar_or_ragged_first_axes() -> None:
    assert rows_of({"a": np.array(1.0)}) is None
    assert rows_of({"a": np.zeros((3, 2)), "b": np.zeros(2)}) is None
    assert rows_of({"a": np.zeros(2), "b": np.array(5)}) is None


# -- group_compatible ---------------------------------------------------------------------


def test_group_compatible_keeps_order_and_splits_by_signature() -> None:
    items: list[Arrays] = [
        {"x": np.zeros((1, 2), np.float32)},  # 0: group A
        {"x": np.zeros((1, 2), np.int64)},  # 1: other dtype
        {"x": np.zeros((3, 2), np.float32)},  # 2: group A (row count may differ)
        {"x": np.zeros((1, 3), np.float32)},  # 3: other inner shape
        {"z": np.zeros((1, 2), np.float32)},  # 4: other tensor name
        {"x": np.zeros((2, 2), np.float32)},  # 5: group A
        {"x": np.zeros((2, 3), np.float32)},  # 6: same as 3
    ]
    assert group_compatible(items) == [[0, 2, 5], [1], [3, 6], [4]]


def test_unbatchable_requests_form_groups_of_their_own() -> None:
    scalar: Arrays = {"x": np.array(1.0, np.float32)}
    ragged: Arrays = {"x": np.zeros(2, np.float32), "m": np.zeros(3, np.float32)}
    items = [scalar, req(1), ragged, req(2), dict(scalar), req(3)]
    assert group_compatible(items) == [[0], [1, 3, 5], [2], [4]]


def test_group_compatible_of_nothing_is_nothing() -> None:
    assert group_compatible([]) == []


# -- concat / split -----------------------------------------------------------------------


def test_concat_then_split_round_trips_several_rows_per_request() -> None:
    items: list[Arrays] = [
        {"x": fp32([1, 2]), "n": np.array([10])},
        {"x": fp32([3, 4], [5, 6], [7, 8]), "n": np.array([30, 50, 70])},
        {"x": fp32([9, 10], [11, 12]), "n": np.array([90, 110])},
    ]
    batch = concat(items)
    assert batch["x"].shape == (6, 2)
    assert batch["n"].tolist() == [10, 30, 50, 70, 90, 110]

    parts = split(batch, [rows_of(it) or 0 for it in items])
    assert len(parts) == 3
    for part, item in zip(parts, items, strict=True):
        assert part.keys() == item.keys()
        for name in item:
            np.testing.assert_array_equal(part[name], item[name])
            assert part[name].dtype == item[name].dtype


def test_concat_and_split_keep_bytes_object_arrays() -> None:
    a = np.array([b"alpha"], dtype=object)
    b = np.array([b"beta", b"gamma\x00bin"], dtype=object)
    batch = concat([{"text": a}, {"text": b}])
    assert batch["text"].dtype == object
    assert batch["text"].tolist() == [b"alpha", b"beta", b"gamma\x00bin"]

    first, second = split(batch, [1, 2])
    assert first["text"].dtype == object and second["text"].dtype == object
    assert first["text"].tolist() == [b"alpha"]
    assert second["text"].tolist() == [b"beta", b"gamma\x00bin"]


def test_split_of_a_single_request_returns_its_outputs() -> None:
    outputs = {"y": fp32([1], [2])}
    (only,) = split(outputs, [2])
    np.testing.assert_array_equal(only["y"], outputs["y"])


def test_split_rejects_a_wrong_row_count_naming_the_output() -> None:
    with pytest.raises(ModelError, match=r"output 'y' has 2 rows for a batch of 3") as info:
        split({"ok": np.zeros(3), "y": np.zeros(2)}, [1, 2])
    assert "one row per input row" in info.value.message
    assert info.value.code == "model_error"


def test_split_rejects_an_output_without_batch_axis() -> None:
    with pytest.raises(ModelError, match=r"output 'score' has no batch axis rows for a batch of 2"):
        split({"score": np.array(0.5)}, [1, 1])


# -- run_batch ----------------------------------------------------------------------------


def test_compatible_requests_run_in_one_call_and_get_their_own_rows() -> None:
    model = FakeModel()
    rec = Recorder()
    rows: list[int] = []
    items = [req(1), req(2, 3), req(4)]
    outcomes = run_batch(
        model, items, RetryPolicy(), sleep=rec.sleep, on_retry=rec.on_retry, on_call=rows.append
    )

    assert len(model.calls) == 1
    assert model.calls[0]["x"].tolist() == [1, 2, 3, 4]
    assert rows == [4]
    assert all(isinstance(o, Success) and o.attempts == 1 for o in outcomes)
    assert [o.outputs["y"].tolist() for o in outcomes if isinstance(o, Success)] == [
        [2],
        [4, 6],
        [8],
    ]
    assert rec.sleeps == [] and rec.retries == 0


def test_incompatible_requests_run_in_separate_calls_in_order() -> None:
    model = FakeModel()
    items: list[Arrays] = [
        req(1),
        {"x": np.array([5], dtype=np.int64)},
        req(2),
        {"x": np.array(7.0, dtype=np.float32)},  # 0-d: cannot be batched
    ]
    outcomes = run_batch(model, items, RetryPolicy(), sleep=Recorder().sleep)

    assert [c["x"].dtype for c in model.calls] == [np.float32, np.int64, np.float32]
    assert [c["x"].tolist() for c in model.calls] == [[1, 2], [5], 7.0]
    assert all(isinstance(o, Success) for o in outcomes)
    assert [o.outputs["y"].tolist() for o in outcomes if isinstance(o, Success)] == [
        [2],
        [10],
        [4],
        14.0,
    ]


def test_a_poison_request_fails_alone_and_its_neighbours_succeed() -> None:
    model = FakeModel(poison=13)
    rec = Recorder()
    policy = RetryPolicy(max_attempts=3, backoff_ms=10)
    outcomes = run_batch(
        model, [req(1), req(13), req(2, 3)], policy, sleep=rec.sleep, on_retry=rec.on_retry
    )

    good_a, bad, good_b = outcomes
    assert isinstance(good_a, Success) and good_a.outputs["y"].tolist() == [2]
    assert isinstance(good_b, Success) and good_b.outputs["y"].tolist() == [4, 6]
    assert isinstance(bad, Failure)
    assert bad.attempts == policy.max_attempts
    assert bad.code == "model_error"
    assert "poison value 13 in x" in bad.message
    assert "ValueError" in bad.message
    # One failed batch call, then each request alone: the poison one three times.
    assert len(model.calls) == 1 + 1 + policy.max_attempts + 1
    assert rec.retries == policy.max_attempts - 1


def test_invalid_input_is_not_retried() -> None:
    model = FakeModel(poison=-1, error=InvalidInput)
    rec = Recorder()
    (outcome,) = run_batch(
        model, [req(-1)], RetryPolicy(max_attempts=5), sleep=rec.sleep, on_retry=rec.on_retry
    )
    assert isinstance(outcome, Failure)
    assert outcome.attempts == 1
    assert outcome.code == "invalid_argument"
    assert outcome.message == "poison value -1 in x"
    assert len(model.calls) == 1
    assert rec.sleeps == [] and rec.retries == 0


def test_a_streamdag_error_keeps_its_code_and_message() -> None:
    model = FakeModel(poison=1, error=lambda m: ModelError(f"gpu on fire: {m}"))
    (outcome,) = run_batch(model, [req(1)], RetryPolicy(max_attempts=2), sleep=Recorder().sleep)
    assert isinstance(outcome, Failure)
    assert outcome.code == "model_error"
    assert outcome.message == "gpu on fire: poison value 1 in x"
    assert outcome.attempts == 2


def test_retries_wait_with_exponential_backoff_and_report_each_retry() -> None:
    model = FakeModel(poison=9)
    rec = Recorder()
    policy = RetryPolicy(max_attempts=3, backoff_ms=100)
    (outcome,) = run_batch(model, [req(9)], policy, sleep=rec.sleep, on_retry=rec.on_retry)

    assert isinstance(outcome, Failure) and outcome.attempts == 3
    assert rec.sleeps == pytest.approx([0.1, 0.2])
    assert rec.retries == 2


def test_a_transient_failure_succeeds_on_the_second_attempt() -> None:
    model = FakeModel(fail_first=1)
    rec = Recorder()
    (outcome,) = run_batch(
        model, [req(3)], RetryPolicy(backoff_ms=100), sleep=rec.sleep, on_retry=rec.on_retry
    )
    assert isinstance(outcome, Success)
    assert outcome.attempts == 2
    assert outcome.outputs["y"].tolist() == [6]
    assert rec.sleeps == pytest.approx([0.1])
    assert rec.retries == 1


def test_a_transient_batch_failure_is_retried_per_request() -> None:
    # The batch call fails once; every request then runs alone and succeeds first time.
    model = FakeModel(fail_first=1)
    rec = Recorder()
    outcomes = run_batch(model, [req(1), req(2)], RetryPolicy(), sleep=rec.sleep)
    assert [type(o) for o in outcomes] == [Success, Success]
    assert [o.attempts for o in outcomes] == [1, 1]
    assert [o.outputs["y"].tolist() for o in outcomes if isinstance(o, Success)] == [[2], [4]]
    assert len(model.calls) == 3
    assert rec.sleeps == []


def test_a_model_returning_the_wrong_row_count_fails_with_a_clear_message() -> None:
    def first_row_only(inputs: Arrays) -> Arrays:
        return {"y": inputs["x"][:1]}

    outcomes = run_batch(
        first_row_only, [req(1, 2), req(3, 4)], RetryPolicy(max_attempts=1), sleep=Recorder().sleep
    )
    for outcome in outcomes:
        assert isinstance(outcome, Failure)
        assert outcome.code == "model_error"
        assert "output 'y' has 1 rows for a batch of 2" in outcome.message


def test_run_batch_of_nothing_calls_nothing() -> None:
    model = FakeModel()
    assert run_batch(model, [], RetryPolicy()) == []
    assert model.calls == []


# -- RetryPolicy --------------------------------------------------------------------------


def test_retry_delay_doubles_and_caps_at_max_backoff() -> None:
    policy = RetryPolicy(backoff_ms=100, max_backoff_ms=250)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 20)] == pytest.approx(
        [0.1, 0.2, 0.25, 0.25, 0.25]
    )


def test_retry_delay_is_zero_without_backoff() -> None:
    assert RetryPolicy(backoff_ms=0).delay(5) == 0.0
