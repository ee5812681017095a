"""The pipeline's Python steps: numpy functions on micro-batches (one row per note).

The three trained models (sections, entities, assertion) run in the ``onnx`` runtime; these
functions prepare their input and turn their per-clause labels into per-note answers:

    normalize   text -> clauses [n, MAX_CLAUSES] (padded with b""), age, sex
    code_icd10  clauses + the three models' labels and scores -> ICD-10 codes, the codes
                assessed or treated this visit, the note's confidence, what to query
    hcc_risk    assessed codes, age, sex -> HCCs and a risk score
    gate        routes each note: needs_review (a human looks) or accepted (auto-coded)
    accept      the auto-coding branch        review   the human review branch
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from medrec.coding import CONCEPTS, assign_codes, hccs_for, risk_score
from medrec.notes import NONE
from medrec.text import MAX_CLAUSES, clauses, demographics
from streamdag.errors import InvalidInput

__all__ = [
    "REVIEW_BELOW",
    "accept",
    "code_icd10",
    "gate",
    "hcc_risk",
    "normalize",
    "review",
]

Arrays = dict[str, NDArray[Any]]

REVIEW_BELOW = 0.6  # a note whose least certain decision is less sure goes to a human
_EVIDENCE_SECTIONS = ("assessment", "plan")  # where a condition counts as assessed/treated


def normalize(inputs: Arrays) -> Arrays:
    """Clean each note and split it into clauses; read the patient's age and sex."""
    notes = _texts(inputs["text"])
    out = np.full((len(notes), MAX_CLAUSES), b"", dtype=object)
    ages = np.zeros(len(notes), dtype=np.int32)
    sexes = np.empty(len(notes), dtype=object)
    for i, raw in enumerate(notes):
        note = raw.decode("utf-8", errors="replace")
        parts = clauses(note)
        if len(parts) > MAX_CLAUSES:
            raise InvalidInput(
                f"the note has {len(parts)} clauses; this pipeline reads at most {MAX_CLAUSES}"
            )
        for j, part in enumerate(parts):
            out[i, j] = part.encode()
        ages[i], sex = demographics(note)
        sexes[i] = sex.encode()
    return {"clauses": out, "age": ages, "sex": sexes}


def code_icd10(inputs: Arrays) -> Arrays:
    """Per note: the codes of every condition affirmed anywhere, the codes of those the
    provider assessed or treated (assessment or plan), the confidence of the least sure
    decision (entity score times assertion score) and its clause, and the uncertain
    diagnoses ("possible", "rule out") that a coder would query the physician about."""
    text = inputs["clauses"]
    concept, assertion, section = (_labels(inputs[k]) for k in ("concept", "assertion", "section"))
    concept_score = inputs["concept_score"].astype(np.float64)
    assertion_score = inputs["assertion_score"].astype(np.float64)
    n = len(text)
    out: dict[str, list[Any]] = {k: [] for k in ("codes", "supported", "weakest", "queries")}
    confidence = np.ones(n, dtype=np.float32)
    for i in range(n):
        present: set[str] = set()
        assessed: set[str] = set()
        queries: list[str] = []
        weakest = b""
        for j in range(text.shape[1]):
            if not text[i, j]:
                continue
            name = concept[i][j]
            sure = concept_score[i, j] * (assertion_score[i, j] if name != NONE else 1.0)
            if sure < confidence[i]:
                confidence[i], weakest = sure, text[i, j]
            if name not in CONCEPTS:
                continue
            if assertion[i][j] == "present":
                present.add(name)
                if section[i][j] in _EVIDENCE_SECTIONS:
                    assessed.add(name)
            elif assertion[i][j] == "possible":
                queries.append(text[i, j].decode())
        out["codes"].append(" ".join(assign_codes(present)).encode())
        out["supported"].append(" ".join(assign_codes(assessed)).encode())
        out["weakest"].append(weakest)
        out["queries"].append("; ".join(queries).encode())
    return {
        **{k: _bytes(v) for k, v in out.items()},
        "confidence": confidence,
        "age": inputs["age"],
        "sex": inputs["sex"],
    }


def hcc_risk(inputs: Arrays) -> Arrays:
    """HCCs and the risk adjustment factor from the codes assessed or treated this visit."""
    supported = [row.decode().split() for row in _texts(inputs["supported"])]
    ages = inputs["age"].reshape(len(supported), -1)[:, 0]
    sexes = [s.decode() for s in _texts(inputs["sex"])]
    hccs = [" ".join(f"HCC{h}" for h in hccs_for(codes)).encode() for codes in supported]
    scores = [
        risk_score(codes, int(age), sex)
        for codes, age, sex in zip(supported, ages, sexes, strict=True)
    ]
    return {"hccs": _bytes(hccs), "risk_score": np.array(scores, dtype=np.float32)}


def gate(inputs: Arrays) -> Arrays:
    """The quality gate: a note goes to review when a diagnosis is uncertain (query the
    physician), when no diagnosis was found, or when the least sure decision scored below
    REVIEW_BELOW; every other note is accepted as coded. Emits one BOOL per branch, so
    each note fires exactly one of the two triggers."""
    codes = _texts(inputs["codes"])
    queries = _texts(inputs["queries"])
    weakest = _texts(inputs["weakest"])
    confidence = inputs["confidence"].reshape(len(codes), -1)[:, 0]
    reasons = []
    for code, query, weak, sure in zip(codes, queries, weakest, confidence, strict=True):
        if query:
            reasons.append(b"uncertain diagnosis, query the physician: " + query)
        elif not code:
            reasons.append(b"no diagnosis found")
        elif sure < REVIEW_BELOW:
            reasons.append(f"low confidence {sure:.2f}: ".encode() + weak)
        else:
            reasons.append(b"")
    needs_review = np.array([bool(r) for r in reasons], dtype=np.bool_)
    return {
        "codes": inputs["codes"],
        "confidence": inputs["confidence"],
        "reason": _bytes(reasons),
        "needs_review": needs_review,
        "accepted": ~needs_review,
    }


def accept(inputs: Arrays) -> Arrays:
    """The auto-coding branch: the codes stand as the final answer."""
    n = len(inputs["codes"])
    return {
        "route": np.full(n, b"auto", dtype=object),
        "codes": inputs["codes"],
        "confidence": inputs["confidence"],
    }


def review(inputs: Arrays) -> Arrays:
    """The review branch: a work item for a human, with the provisional codes, the reason
    and the queue (clinical documentation queries go to CDI, the rest to coders)."""
    reasons = _texts(inputs["reason"])
    queues = [b"cdi-query" if r.startswith(b"uncertain") else b"coding-review" for r in reasons]
    return {
        "route": np.full(len(reasons), b"review", dtype=object),
        "queue": _bytes(queues),
        "reason": inputs["reason"],
        "codes": inputs["codes"],
        "confidence": inputs["confidence"],
    }


def _texts(array: NDArray[Any]) -> list[bytes]:
    """One BYTES element per row (a row may come as [n] or [n, 1])."""
    return [bytes(v) for v in array.reshape(len(array), -1)[:, 0]]


def _labels(array: NDArray[Any]) -> list[list[str]]:
    return [[v.decode() for v in row] for row in array]


def _bytes(items: list[bytes]) -> NDArray[Any]:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out
