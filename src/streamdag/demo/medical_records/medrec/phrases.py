"""The words of the synthetic notes: how common each condition is, which medications and
specialists go with it, and the phrasing templates by section and assertion.

In a template, {x} is a condition as the note names it (a synonym, perhaps misspelled),
{he}/{his} the patient, {n} a small number, {med} a medication, {specialist} a clinic.
"""

from __future__ import annotations

import re

__all__ = [
    "ABSENT",
    "ACRONYMS",
    "ASSESS_ABSENT",
    "ASSESS_ACUTE",
    "ASSESS_CHRONIC",
    "COMPLAINT",
    "FAMILY",
    "HEADERS",
    "HISTORY_PRESENT",
    "MEDS",
    "PLAN_OTHER",
    "PLAN_POSSIBLE",
    "PLAN_PRESENT",
    "PLAN_TAKING",
    "POSSIBLE",
    "POSSIBLE_CANDIDATES",
    "PREVALENCE",
    "SOCIAL",
    "SPECIALIST",
]

PREVALENCE = {
    "diabetes": 0.35,
    "hypertension": 0.6,
    "heart_failure": 0.15,
    "copd": 0.15,
    "ckd3": 0.15,
    "depression": 0.15,
    "morbid_obesity": 0.12,
    "afib": 0.12,
    "hyperlipidemia": 0.45,
    "gerd": 0.2,
    "osteoarthritis": 0.2,
}
MEDS: dict[str, list[tuple[str, tuple[str, ...], str]]] = {
    "diabetes": [
        ("metformin", ("500 mg", "1000 mg"), "twice daily"),
        ("insulin glargine", ("20 units", "30 units"), "at bedtime"),
    ],
    "hypertension": [
        ("lisinopril", ("10 mg", "20 mg", "40 mg"), "daily"),
        ("amlodipine", ("5 mg", "10 mg"), "daily"),
    ],
    "heart_failure": [
        ("furosemide", ("20 mg", "40 mg"), "daily"),
        ("metoprolol succinate", ("25 mg", "50 mg"), "daily"),
    ],
    "copd": [
        ("tiotropium", ("18 mcg",), "inhaled daily"),
        ("albuterol inhaler", ("2 puffs",), "as needed"),
    ],
    "depression": [("sertraline", ("50 mg", "100 mg"), "daily")],
    "afib": [("apixaban", ("5 mg",), "twice daily"), ("diltiazem", ("120 mg",), "daily")],
    "hyperlipidemia": [("atorvastatin", ("20 mg", "40 mg"), "at bedtime")],
    "gerd": [("omeprazole", ("20 mg",), "daily")],
    "osteoarthritis": [("acetaminophen", ("500 mg",), "as needed")],
}
SPECIALIST = {
    "heart_failure": "cardiology",
    "afib": "cardiology",
    "ckd3": "nephrology",
    "copd": "pulmonology",
    "depression": "behavioral health",
    "diabetes": "endocrinology",
    "morbid_obesity": "nutrition",
    "osteoarthritis": "orthopedics",
}
ACRONYMS = re.compile(
    r"\b(copd|chf|htn|ckd|gerd|mdd|t2dm|dm2|hfref|bp|hr|rr|bmi|spo2|a1c|ecg)\b", re.IGNORECASE
)

# Templates by (section, assertion); {x} is the condition, {he}/{his} the patient.
HISTORY_PRESENT = [
    "{he} has a history of {x}",
    "h/o {x}",
    "known {x}",
    "longstanding {x}",
    "{x} diagnosed several years ago",
]
COMPLAINT = [
    "{he} complains of {x}",
    "c/o {x}",
    "{he} reports {x} for {n} days",
    "{he} reports worsening {x}",
]
ABSENT = [
    "denies {x}",
    "no {x}",
    "{he} denies {x}",
    "negative for {x}",
    "no history of {x}",
    "without {x}",
]
FAMILY = [
    "mother with {x}",
    "father had {x}",
    "family history of {x}",
    "brother with {x}",
    "sister has {x}",
]
ASSESS_CHRONIC = [
    "{x} is stable",
    "{x} remains stable",
    "{x} is well controlled",
    "{x} is poorly controlled",
    "{x} not at goal",
    "{x} with good control on current regimen",
    "{x} chronic and stable",
    "{x} is worsening",
]
ASSESS_ACUTE = ["{x} improving", "acute {x}", "{x} is new", "{x} treated today"]
ASSESS_ABSENT = ["no evidence of {x}", "{x} ruled out", "no signs of {x}"]
POSSIBLE = [
    "possible {x}",
    "suspect {x}",
    "cannot exclude {x}",
    "concern for {x}",
    "questionable {x}",
    "r/o {x}",
]
PLAN_TAKING = ["continue {med} for {x}", "increase {med} for {x}"]
PLAN_PRESENT = [
    "start {med} for {x}",
    "refer to {specialist} for {x}",
    "recheck labs for {x} in {n} months",
]
PLAN_POSSIBLE = {
    "pneumonia": ["chest x-ray to r/o {x}", "order chest x-ray to rule out {x}"],
    "heart_failure": ["echocardiogram to evaluate for {x}", "order bnp to rule out {x}"],
}
PLAN_OTHER = [
    "follow up in {n} months",
    "return to clinic in {n} weeks",
    "labs today",
    "check a1c and lipid panel",
    "continue current medications",
    "refill medications",
    "encourage diet and exercise",
    "flu vaccine given today",
    "call if symptoms worsen",
]
SOCIAL = [
    "former smoker",
    "never smoker",
    "drinks alcohol socially",
    "lives with {his} spouse",
    "walks daily",
    "here with {his} daughter",
    "{he} feels well overall",
    "sleeping well",
]
POSSIBLE_CANDIDATES = ("pneumonia", "heart_failure", "copd", "afib", "ckd3", "depression")

HEADERS = {
    "full": {
        "hpi": "HISTORY OF PRESENT ILLNESS:",
        "pmh": "PAST MEDICAL HISTORY:",
        "fh": "FAMILY HISTORY:",
        "meds": "MEDICATIONS:",
        "vitals": "VITAL SIGNS:",
        "assessment": "ASSESSMENT:",
        "plan": "PLAN:",
    },
    "short": {
        "hpi": "HPI:",
        "pmh": "PMH:",
        "fh": "FH:",
        "meds": "Meds:",
        "vitals": "Vitals:",
        "assessment": "A/P:",
        "plan": "A/P:",
    },
    "none": {},
}
