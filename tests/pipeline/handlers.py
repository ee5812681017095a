"""Handlers referenced by the test specs (found next to the spec via the spec's folder)."""

from __future__ import annotations

import numpy as np


def identity(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return dict(inputs)
