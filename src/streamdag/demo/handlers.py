"""Handlers of the quickstart pipeline: plain numpy functions on micro-batches."""

from __future__ import annotations

import numpy as np

URGENT = (b"chest pain", b"shortness of breath", b"syncope", b"bleeding")
NEGATIONS = (b"denies ", b"no ", b"without ")


def normalize(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Lower-case and collapse whitespace; BYTES in, BYTES out, one row per document."""
    text = inputs["text"].reshape(-1)
    out = np.array([b" ".join(t.lower().split()) for t in text], dtype=object)
    return {"text": out}


def features(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Counts of urgent findings, negated ones, and words, per document."""
    rows = []
    for text in inputs["text"]:
        found = sum(text.count(term) for term in URGENT)
        negated = sum(text.count(neg + term) for term in URGENT for neg in NEGATIONS)
        rows.append([found - negated, negated, len(text.split())])
    return {"counts": np.array(rows, dtype=np.float32).reshape(-1, 3)}


def urgency(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A logistic score from the counts, and its label."""
    counts = inputs["counts"]
    score = 1.0 / (1.0 + np.exp(-(2.5 * counts[:, 0] - 0.5 * counts[:, 1] - 1.0)))
    label = np.where(score >= 0.5, b"urgent", b"routine").astype(object)
    return {"score": score.astype(np.float32), "label": label}
