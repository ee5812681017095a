"""Models the benchmark pipelines run (found through the spec's base_dir, this folder)."""

from __future__ import annotations

import os
import time

import numpy as np


def double(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A model that costs next to nothing, so the benchmark measures the engine around it."""
    return {"y": inputs["x"] * 2}


def _cost_s(rows: int) -> float:
    return float(os.environ.get("BENCH_COST_MS", "1")) / 1000 * rows


def sleep(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``y = 2 * x`` after waiting BENCH_COST_MS per row without the GIL, as a step waits
    on an accelerator or a remote server."""
    time.sleep(_cost_s(len(inputs["x"])))
    return {"y": inputs["x"] * 2}


def spin(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``y = 2 * x`` after BENCH_COST_MS per row of Python work holding the GIL: the
    thread's own CPU time, so a process waiting for a core does not count it as work."""
    end = time.thread_time() + _cost_s(len(inputs["x"]))
    while time.thread_time() < end:
        pass
    return {"y": inputs["x"] * 2}
