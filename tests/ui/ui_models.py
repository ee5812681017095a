"""Models of the web view tests' pipeline (copied beside each test spec)."""

from __future__ import annotations

import numpy as np

Arrays = dict[str, np.ndarray]


def clean(inputs: Arrays) -> Arrays:
    if np.any(inputs["x"] == 13):
        raise ValueError("clean cannot take 13")
    return {"x": inputs["x"]}


def left(inputs: Arrays) -> Arrays:
    return {"a": inputs["x"] + 1}


def right(inputs: Arrays) -> Arrays:
    return {"b": inputs["x"] * 2}


def merge(inputs: Arrays) -> Arrays:
    total = inputs["a"] + inputs["b"]
    return {"total": total, "big": (total > 50).reshape(len(total), -1)[:, :1]}


def review(inputs: Arrays) -> Arrays:
    return {"flagged": inputs["total"]}
