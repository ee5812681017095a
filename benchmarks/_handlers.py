"""Models the benchmark pipelines run (found through the spec's base_dir, this folder)."""

from __future__ import annotations

import numpy as np


def double(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A model that costs next to nothing, so the benchmark measures the engine around it."""
    return {"y": inputs["x"] * 2}
