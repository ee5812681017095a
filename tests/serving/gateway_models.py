"""Models of the gateway tests' pipeline (copied beside each test spec)."""

from __future__ import annotations

import time

import numpy as np

Arrays = dict[str, np.ndarray]


def double(inputs: Arrays) -> Arrays:
    out: Arrays = {}
    if "x" in inputs:
        if np.any(inputs["x"] == 13):
            raise ValueError("double cannot take 13")
        out["x"] = inputs["x"] * 2
    if "text" in inputs:
        out["text"] = np.array([t.upper() for t in inputs["text"].flat], dtype=object).reshape(
            inputs["text"].shape
        )
    return out


def add_one(inputs: Arrays) -> Arrays:
    out = dict(inputs)
    if "x" in out:
        out["x"] = out["x"] + 1
    return out


def slow(inputs: Arrays) -> Arrays:
    time.sleep(2)
    return dict(inputs)
