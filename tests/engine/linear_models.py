"""Models used by the engine's integration tests (copied next to each test spec)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np


def scale(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"y": inputs["x"] * 2}


def shift(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"w": inputs["v"] + 1}


def total(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"sum": inputs["w"].sum(axis=1)}


def slow_scale(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    time.sleep(0.02)
    return {"y": inputs["x"] * 2}


def very_slow_scale(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    time.sleep(8)
    return {"y": inputs["x"] * 2}


def poisoned(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if np.any(inputs["x"] == 13):
        raise ValueError("cannot score 13")
    return {"y": inputs["x"] * 2}


def hangs_on_seven(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if np.any(inputs["x"] == 7):
        time.sleep(1.0)
    return {"y": inputs["x"] * 2}


def grows_on_seven(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """1.2 MB of result for a request holding a 7: more than a Kafka record may hold."""
    x = inputs["x"]
    if np.any(x == 7):
        return {"y": np.zeros((x.shape[0], 300_000), dtype=np.float32)}
    return {"y": x * 2}


def half_mega_on_five(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """600 KB of result for a request holding a 5: fits a record, but two do not."""
    x = inputs["x"]
    if np.any(x == 5):
        return {"y": np.ones((x.shape[0], 150_000), dtype=np.float32)}
    return {"y": x * 2}


def hangs_when_told(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Never returns in a worker started with HANG_FOR_TEST set (a model wedged in a
    native call); scales like ``scale`` elsewhere."""
    if os.environ.get("HANG_FOR_TEST"):
        threading.Event().wait()
    return {"y": inputs["x"] * 2}
