"""The clinical knowledge of the example: concepts, ICD-10-CM coding rules, HCC risk.

Both the note generator (for ground truth) and the pipeline's rule steps (for answers) use
these functions, so a pipeline answer differs from the truth only where a model erred.

The HCC figures are modelled on CMS-HCC V24 (community, non-dual, aged segment) and
rounded; they illustrate risk adjustment and are not for billing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ACUTE",
    "CHRONIC",
    "CONCEPTS",
    "Concept",
    "assign_codes",
    "hccs_for",
    "risk_score",
]


@dataclass(frozen=True)
class Concept:
    name: str
    display: str
    code: str  # the ICD-10-CM code of the condition on its own
    synonyms: tuple[str, ...]  # lower-case surface forms the notes use


CONCEPTS: dict[str, Concept] = {
    c.name: c
    for c in [
        Concept(
            "diabetes",
            "type 2 diabetes",
            "E11.9",
            (
                "type 2 diabetes",
                "type 2 diabetes mellitus",
                "diabetes mellitus type 2",
                "t2dm",
                "dm2",
                "non insulin dependent diabetes",
            ),
        ),
        Concept(
            "hypertension",
            "hypertension",
            "I10",
            ("hypertension", "htn", "essential hypertension", "high blood pressure"),
        ),
        Concept(
            "heart_failure",
            "heart failure",
            "I50.9",
            ("congestive heart failure", "chf", "heart failure", "hfref"),
        ),
        Concept(
            "copd",
            "COPD",
            "J44.9",
            ("copd", "chronic obstructive pulmonary disease", "chronic obstructive lung disease"),
        ),
        Concept(
            "ckd3",
            "CKD stage 3",
            "N18.30",
            ("chronic kidney disease stage 3", "ckd stage 3", "stage 3 ckd", "ckd 3"),
        ),
        Concept(
            "depression",
            "major depression",
            "F32.9",
            ("major depressive disorder", "major depression", "mdd"),
        ),
        Concept(
            "morbid_obesity",
            "morbid obesity",
            "E66.01",
            ("morbid obesity", "severe obesity", "class 3 obesity"),
        ),
        Concept(
            "afib",
            "atrial fibrillation",
            "I48.91",
            ("atrial fibrillation", "afib", "a fib"),
        ),
        Concept(
            "hyperlipidemia",
            "hyperlipidemia",
            "E78.5",
            ("hyperlipidemia", "dyslipidemia", "high cholesterol"),
        ),
        Concept(
            "gerd",
            "GERD",
            "K21.9",
            ("gerd", "gastroesophageal reflux disease", "acid reflux"),
        ),
        Concept(
            "osteoarthritis",
            "knee osteoarthritis",
            "M17.9",
            ("osteoarthritis of the knee", "knee osteoarthritis", "degenerative joint disease"),
        ),
        Concept("pneumonia", "pneumonia", "J18.9", ("pneumonia", "community acquired pneumonia")),
        Concept("chest_pain", "chest pain", "R07.9", ("chest pain", "chest discomfort")),
        Concept("dyspnea", "shortness of breath", "R06.02", ("shortness of breath", "dyspnea")),
    ]
}

CHRONIC = (
    "diabetes",
    "hypertension",
    "heart_failure",
    "copd",
    "ckd3",
    "depression",
    "morbid_obesity",
    "afib",
    "hyperlipidemia",
    "gerd",
    "osteoarthritis",
)
ACUTE = ("pneumonia", "chest_pain", "dyspnea")

# ICD-10-CM -> HCC (V24), coefficients (community, non-dual, aged), hierarchies.
_HCC_OF = {
    "E11.22": 18,
    "E11.9": 19,
    "E66.01": 22,
    "F32.9": 59,
    "I50.9": 85,
    "I11.0": 85,
    "I13.0": 85,
    "I48.91": 96,
    "J44.9": 111,
    "N18.30": 138,
}
_COEFFICIENT = {
    18: 0.302,
    19: 0.105,
    22: 0.250,
    59: 0.309,
    85: 0.331,
    96: 0.268,
    111: 0.335,
    138: 0.069,
}
_DROPS = {18: (19,)}  # a higher HCC in a family drops the lower ones
_INTERACTIONS = (  # (name, HCCs of one side, HCCs of the other, coefficient)
    ("DIABETES_CHF", (18, 19), (85,), 0.121),
    ("CHF_COPD", (85,), (111,), 0.155),
    ("CHF_RENAL", (85,), (138,), 0.156),
)
# Demographic factor by sex and five-year age band from 65 (the last band is open).
_DEMOGRAPHIC = {
    "F": (0.323, 0.386, 0.451, 0.528, 0.640, 0.780),
    "M": (0.309, 0.378, 0.476, 0.565, 0.686, 0.845),
}


def assign_codes(concepts: Iterable[str]) -> list[str]:
    """The ICD-10-CM codes for a set of affirmed conditions, sorted.

    Beyond one code per condition this applies three guideline rules: diabetes with CKD
    is coded as diabetic CKD (E11.22; the link is presumed); hypertension with heart
    failure and/or CKD takes the hypertensive combination code (I11.0, I12.9, I13.0);
    shortness of breath is not coded beside a condition it is integral to.
    """
    present = set(concepts)
    codes: set[str] = set()
    for name in present:
        codes.add(CONCEPTS[name].code)
    if "diabetes" in present and "ckd3" in present:
        codes.discard("E11.9")
        codes.add("E11.22")
    if "hypertension" in present:
        hf, ckd = "heart_failure" in present, "ckd3" in present
        combined = {(True, True): "I13.0", (True, False): "I11.0", (False, True): "I12.9"}
        if (hf, ckd) in combined:
            codes.discard("I10")
            codes.add(combined[hf, ckd])
    if present & {"pneumonia", "heart_failure", "copd"}:
        codes.discard("R06.02")
    return sorted(codes)


def hccs_for(codes: Iterable[str]) -> list[int]:
    """The payment HCCs of some ICD-10-CM codes, after hierarchies, sorted."""
    hccs = {_HCC_OF[c] for c in codes if c in _HCC_OF}
    for high, lows in _DROPS.items():
        if high in hccs:
            hccs.difference_update(lows)
    return sorted(hccs)


def risk_score(codes: Iterable[str], age: int, sex: str) -> float:
    """The risk adjustment factor: demographics + HCC coefficients + interactions."""
    hccs = set(hccs_for(codes))
    bands = _DEMOGRAPHIC.get(sex.upper()[:1], _DEMOGRAPHIC["F"])
    score = bands[min(max(age - 65, 0) // 5, len(bands) - 1)]
    score += sum(_COEFFICIENT[h] for h in hccs)
    for _, one, other, coefficient in _INTERACTIONS:
        if hccs & set(one) and hccs & set(other):
            score += coefficient
    return round(score, 3)
