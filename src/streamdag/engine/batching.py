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

from streamdag.errors import InvalidInput, ModelError, ModelHung, StreamdagError
from streamdag.protocol.datatypes import Arrays

__all__ = [
    "Failure",
    "Outcome",
    "RetryPolicy",
    "Success",
    "concat",
    "group_compatible",
    "rows_of",
    "run_batch",
    "run_group",
    "split",
]

Predict = Callable[[Arrays], Arrays]


@dataclass(slots=True)
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


def _layout(arrays: Arrays) -> tuple[tuple[object, ...], int] | None:
    """What a request must share with others to batch with them (tensor names, dtypes
    and shapes after the first axis), and its rows; None if it cannot be batched."""
    rows = -1
    signature: list[object] = []
    for name, array in arrays.items():
        shape = array.shape
        if not shape or (rows >= 0 and shape[0] != rows):
            return None
        rows = shape[0]
        signature += (name, array.dtype, shape[1:])
    return (tuple(signature), rows) if signature else None


def group_compatible(items: Sequence[Arrays]) -> list[list[int]]:
    """Indices of ``items`` grouped so that each group concatenates along axis 0.

    Groups keep arrival order; an unbatchable request forms a group of its own.
    """
    return [group for group, _ in _groups(items)]


def _groups(items: Sequence[Arrays]) -> list[tuple[list[int], list[int]]]:
    """``group_compatible`` with the rows of each member (empty for a lone request)."""
    groups: dict[object, tuple[list[int], list[int]]] = {}
    alone: list[tuple[list[int], list[int]]] = []
    for i, arrays in enumerate(items):
        found = _layout(arrays)
        if found is None:
            alone.append(([i], []))
        else:
            members, rows = groups.setdefault(found[0], ([], []))
            members.append(i)
            rows.append(found[1])
    if not alone and len(groups) == 1:
        return list(groups.values())
    return sorted([*groups.values(), *alone], key=lambda g: g[0][0])


def concat(items: Sequence[Arrays]) -> Arrays:
    if len(items) == 1:
        return items[0]
    return {name: np.concatenate([it[name] for it in items], axis=0) for name in items[0]}


def split(outputs: Arrays, row_counts: Sequence[int]) -> list[Arrays]:
    """Split a batch's outputs back into one dict per request; raise ModelError if an
    output's first axis does not hold exactly the batch's rows."""
    _check_rows(outputs, sum(row_counts))
    if len(row_counts) == 1:
        return [outputs]
    parts = []
    start = 0
    for rows in row_counts:
        end = start + rows
        parts.append({name: array[start:end] for name, array in outputs.items()})
        start = end
    return parts


def _check_rows(outputs: Arrays, total: int) -> None:
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            got = array.shape[0] if array.ndim else "no batch axis"
            raise ModelError(
                f"output {name!r} has {got} rows for a batch of {total}: a model must "
                "return one row per input row"
            )


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
        except ModelHung:
            raise  # not this request's failure: the worker must go
        except Exception as exc:
            if attempt >= policy.max_attempts or not _retryable(exc):
                code, message = _error_of(exc)
                return Failure(code, message, attempts=attempt)
            on_retry()
            sleep(policy.delay(attempt))


def run_group(
    predict: Predict,
    inputs: Arrays,
    counts: Sequence[int],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[], None] = lambda: None,
    on_call: Callable[[int], None] = lambda rows: None,
) -> Arrays | list[Outcome]:
    """Requests of one layout whose rows are concatenated in ``inputs`` (request k has
    ``counts[k]`` rows, in order), as one call: its outputs, every row, when it succeeded.
    If that call raises (or returns the wrong number of rows), or there is one request,
    each request runs alone with retries and backoff: their outcomes, in order."""
    total = sum(counts)
    if len(counts) > 1:
        try:
            on_call(total)
            outputs = predict(inputs)
            _check_rows(outputs, total)
            return outputs
        except ModelHung:
            raise
        except Exception:
            pass
    outcomes: list[Outcome] = []
    start = 0
    for rows in counts:
        end = start + rows
        alone = inputs if len(counts) == 1 else {n: a[start:end] for n, a in inputs.items()}
        on_call(rows)
        outcomes.append(_run_alone(predict, alone, policy, sleep, on_retry))
        start = end
    return outcomes


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
    number of rows), every item of the group is run alone with retries and backoff
    (``run_group``).
    """
    outcomes: list[Outcome | None] = [None] * len(items)
    for group, counts in _groups(items):
        if len(group) > 1:
            found = run_group(
                predict,
                concat([items[i] for i in group]),
                counts,
                policy,
                sleep=sleep,
                on_retry=on_retry,
                on_call=on_call,
            )
            if isinstance(found, dict):
                for i, part in zip(group, split(found, counts), strict=True):
                    outcomes[i] = Success(part)
            else:
                for i, outcome in zip(group, found, strict=True):
                    outcomes[i] = outcome
            continue
        (i,) = group
        on_call(rows_of(items[i]) or 1)
        outcomes[i] = _run_alone(predict, items[i], policy, sleep, on_retry)
    return [o for o in outcomes if o is not None]
