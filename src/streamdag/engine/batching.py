"""Micro-batching: concatenate requests along the first axis, run once, split rows back.

Pure logic without Kafka. ``run_batch`` is what a step does with the model for one batch:
compatible requests run as one call; when that call fails, each request of the group is
retried on its own with backoff, so one poison record never fails its neighbours.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from streamdag.errors import InvalidInput, ModelError, StreamdagError

__all__ = [
    "Failure",
    "Outcome",
    "RetryPolicy",
    "Success",
    "concat",
    "group_compatible",
    "rows_of",
    "run_batch",
    "split",
]

Arrays = dict[str, np.ndarray]
Predict = Callable[[Arrays], Arrays]


@dataclass(frozen=True)
class Success:
    outputs: Arrays
    attempts: int = 1


@dataclass(frozen=True)
class Failure:
    code: str
    message: str
    attempts: int


Outcome = Success | Failure


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_ms: float = 100.0
    max_backoff_ms: float = 5_000.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential."""
        return float(min(self.backoff_ms * 2.0 ** (attempt - 1), self.max_backoff_ms)) / 1000.0


def rows_of(arrays: Arrays) -> int | None:
    """The batch length shared by every tensor, or None if the request cannot be batched
    (a 0-d tensor, or tensors whose first axes differ)."""
    lengths = {a.shape[0] if a.ndim else None for a in arrays.values()}
    if len(lengths) != 1:
        return None
    (n,) = lengths
    return n


def _signature(arrays: Arrays) -> tuple[object, ...] | None:
    if rows_of(arrays) is None:
        return None
    return tuple(sorted((k, a.dtype.str, a.shape[1:]) for k, a in arrays.items()))


def group_compatible(items: Sequence[Arrays]) -> list[list[int]]:
    """Indices of ``items`` grouped so that each group concatenates along axis 0.

    Groups keep arrival order; an unbatchable request forms a group of its own.
    """
    groups: dict[object, list[int]] = {}
    alone: list[list[int]] = []
    for i, arrays in enumerate(items):
        sig = _signature(arrays)
        if sig is None:
            alone.append([i])
        else:
            groups.setdefault(sig, []).append(i)
    return sorted([*groups.values(), *alone], key=lambda g: g[0])


def concat(items: Sequence[Arrays]) -> Arrays:
    if len(items) == 1:
        return items[0]
    return {name: np.concatenate([it[name] for it in items], axis=0) for name in items[0]}


def split(outputs: Arrays, row_counts: Sequence[int]) -> list[Arrays]:
    """Split a batch's outputs back into one dict per request; raise ModelError if an
    output's first axis does not hold exactly the batch's rows."""
    total = sum(row_counts)
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            got = array.shape[0] if array.ndim else "no batch axis"
            raise ModelError(
                f"output {name!r} has {got} rows for a batch of {total}: a model must "
                "return one row per input row"
            )
    if len(row_counts) == 1:
        return [outputs]
    bounds = np.cumsum(row_counts)[:-1]
    parts = {name: np.split(array, bounds) for name, array in outputs.items()}
    return [{name: parts[name][i] for name in outputs} for i in range(len(row_counts))]


def _error_of(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, StreamdagError):
        return exc.code, exc.message
    return ModelError.code, f"{type(exc).__name__}: {exc}"


def _retryable(exc: BaseException) -> bool:
    # Input that does not fit the model fails the same way every time.
    return not isinstance(exc, InvalidInput)


def _run_alone(
    predict: Predict,
    arrays: Arrays,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    on_retry: Callable[[], None],
) -> Outcome:
    attempt = 0
    while True:
        attempt += 1
        try:
            outputs = predict(arrays)
            rows = rows_of(arrays)
            if rows is not None:
                outputs = split(outputs, [rows])[0]
            return Success(outputs, attempts=attempt)
        except Exception as exc:
            if attempt >= policy.max_attempts or not _retryable(exc):
                code, message = _error_of(exc)
                return Failure(code, message, attempts=attempt)
            on_retry()
            sleep(policy.delay(attempt))


def run_batch(
    predict: Predict,
    items: Sequence[Arrays],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[], None] = lambda: None,
    on_call: Callable[[int], None] = lambda rows: None,
) -> list[Outcome]:
    """One outcome per item, in order.

    Each compatible group runs as one call; if that call raises (or returns the wrong
    number of rows), every item of the group is run alone with retries and backoff.
    """
    outcomes: list[Outcome | None] = [None] * len(items)
    for group in group_compatible(items):
        members = [items[i] for i in group]
        if len(group) > 1:
            counts = [rows_of(m) or 0 for m in members]
            try:
                on_call(sum(counts))
                outputs = predict(concat(members))
                for i, part in zip(group, split(outputs, counts), strict=True):
                    outcomes[i] = Success(part)
                continue
            except Exception:
                pass
        for i in group:
            on_call(rows_of(items[i]) or 1)
            outcomes[i] = _run_alone(predict, items[i], policy, sleep, on_retry)
    return [o for o in outcomes if o is not None]
