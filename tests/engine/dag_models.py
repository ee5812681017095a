"""Models of the DAG integration tests (copied next to each test spec)."""

from __future__ import annotations

import threading
import time

import numpy as np


def split(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    x = inputs["x"]
    return {"a": x + 1, "b": x * 10}


def left(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"l": inputs["a"] * 2}


def slow_left(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    time.sleep(0.01)
    return {"l": inputs["a"] * 2}


def right(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"r": inputs["b"] + 3}


# Holds the slow right branch until a test lets it go (the runner shares this process).
RELEASE = threading.Event()


def slow_right(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    RELEASE.wait(30)
    return {"r": inputs["b"] + 3}


def failing_right(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if np.any(inputs["b"] == 70):
        raise RuntimeError("right branch cannot take 70")
    return {"r": inputs["b"] + 3}


def combine(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    total = inputs.get("l", 0) + inputs.get("r", 0)
    return {"total": np.asarray(total), "parts": np.full(len(total), len(inputs), np.int32)}


def route(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Routes each row: even values to the `even` branch, odd to `odd`, 0 to neither."""
    x = inputs["x"].reshape(len(inputs["x"]), -1)[:, 0]
    return {"x": inputs["x"], "even": (x % 2 == 0) & (x != 0), "odd": x % 2 == 1}


def mark_even(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"kind": np.full(len(inputs["x"]), b"even", dtype=object)}


def mark_odd(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"kind": np.full(len(inputs["x"]), b"odd", dtype=object)}


def gate(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Routes each row of a total 12i + 5 by i: even to `even`, odd to `odd`, 0 to neither."""
    total = inputs["total"]
    i = (total.reshape(len(total), -1)[:, 0] - 5) // 12
    return {"x": total, "even": (i % 2 == 0) & (i != 0), "odd": i % 2 == 1}


def tag_even(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"kind": np.full(len(inputs["x"]), b"even", dtype=object), "y": inputs["x"] * 2}


def tag_odd(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"kind": np.full(len(inputs["x"]), b"odd", dtype=object), "y": inputs["x"] * 3}
