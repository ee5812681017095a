"""Models of the claim-check tests (copied next to each test spec)."""

from __future__ import annotations

import numpy as np

# Set by a test while plus_one is to fail (the module is imported once per test process).
broken = False


def double(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"y": inputs["x"] * 2}


def plus_one(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if broken:
        raise RuntimeError("plus-one is broken")
    return {"y": inputs["x"] + 1}


def add(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"z": inputs["a"] + inputs["b"]}


def five_megabytes(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"y": np.ones((1, 1_250_000), dtype=np.float32)}
