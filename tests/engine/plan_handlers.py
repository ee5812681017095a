"""Handlers named by the plan tests' specs (found through the spec's base_dir)."""

from __future__ import annotations

import numpy as np


def identity(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return dict(inputs)
