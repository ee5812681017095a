"""Models of the observability tests: a fan-out/join pipeline with a branch that fails on
one value (copied next to each test spec; the runner shares the test process, so a test
can "fix" the broken branch by flipping ``FIXED``)."""

from __future__ import annotations

import numpy as np

# Whether the fixable branch has had its fix deployed.
FIXED = False


def split(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    x = inputs["x"]
    return {"a": x + 1, "b": x * 10}


def left(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"l": inputs["a"] * 2}


def failing_right(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if np.any(inputs["b"] == 70):
        raise RuntimeError("right branch cannot take 70")
    return {"r": inputs["b"] + 3}


def fixable_right(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not FIXED and np.any(np.isin(inputs["b"], [70, 90])):
        raise RuntimeError("right branch cannot take 70 or 90")
    return {"r": inputs["b"] + 3}


def combine(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    total = inputs.get("l", 0) + inputs.get("r", 0)
    return {"total": np.asarray(total), "parts": np.full(len(total), len(inputs), np.int32)}
