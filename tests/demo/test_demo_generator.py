"""The note generator, the text preparation and the coding rules of the medical-records
example: no broker, no models."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from types import SimpleNamespace

from streamdag.demo import EXAMPLE_DIR

DIGEST = """
import hashlib, sys
sys.path.insert(0, {root!r})
from medrec.notes import generate
print(hashlib.sha256(repr(generate(60, seed=11)).encode()).hexdigest())
"""


def test_the_same_seed_gives_the_same_notes_in_any_process(medrec: SimpleNamespace) -> None:
    here = hashlib.sha256(repr(medrec.notes.generate(60, seed=11)).encode()).hexdigest()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        there = subprocess.run(
            [sys.executable, "-c", DIGEST.format(root=str(EXAMPLE_DIR))],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        ).stdout.strip()
        assert there == here
    assert medrec.notes.generate(60, seed=12) != medrec.notes.generate(60, seed=11)


def test_every_clause_label_lines_up_with_the_text(medrec: SimpleNamespace) -> None:
    for note in medrec.notes.generate(300, seed=3):
        parts = medrec.text.clauses(note.text)
        assert parts == [medrec.text.clauses(c.text)[0] for c in note.clauses], note.text
        assert len(parts) <= medrec.text.MAX_CLAUSES
        assert medrec.text.demographics(note.text) == (note.truth.age, note.truth.sex)


def test_notes_have_sections_negations_medications_and_vitals(medrec: SimpleNamespace) -> None:
    notes = medrec.notes.generate(300, seed=4)
    clauses = [c for n in notes for c in n.clauses]
    assert Counter(c.section for c in clauses).keys() == set(medrec.notes.SECTIONS)
    assert Counter(c.assertion for c in clauses).keys() == {*medrec.notes.ASSERTIONS, "none"}
    assert {c.concept for c in clauses} == {*medrec.coding.CONCEPTS, "none"}
    denied = [c.text for c in clauses if c.assertion == "absent"]
    assert any(t.startswith("denies ") for t in denied)
    assert any(" mg " in c.text for c in clauses if c.section == "medications")
    assert any(c.text.startswith("bp ") for c in clauses if c.section == "vitals")
    for note in notes:
        present = {c.concept for c in note.clauses if c.assertion == "present"}
        assert list(note.truth.codes) == medrec.coding.assign_codes(present)
        assert note.truth.codes, "every patient has at least one condition"


def test_text_preparation_drops_headers_and_spells_out_abbreviations(
    medrec: SimpleNamespace,
) -> None:
    note = "HPI: 70 year old man c/o chest pain but denies SOB.\nA/P: R/o pneumonia; HTN, stable."
    assert medrec.text.clauses(note) == [
        "70 year old man complains of chest pain",
        "denies sob",
        "rule out pneumonia",
        "htn",
        "stable",
    ]
    assert medrec.text.demographics(note) == (70, "M")
    assert medrec.text.demographics("no age here") == (0, "U")


def test_coding_rules(medrec: SimpleNamespace) -> None:
    code = medrec.coding.assign_codes
    assert code({"diabetes"}) == ["E11.9"]
    assert code({"diabetes", "ckd3"}) == ["E11.22", "N18.30"]  # the link is presumed
    assert code({"hypertension", "heart_failure", "ckd3"}) == ["I13.0", "I50.9", "N18.30"]
    assert code({"hypertension", "heart_failure"}) == ["I11.0", "I50.9"]
    assert code({"dyspnea", "copd"}) == ["J44.9"]  # integral to COPD: not coded
    assert code({"dyspnea", "chest_pain"}) == ["R06.02", "R07.9"]
    # HCC 18 drops HCC 19; CHF with COPD adds an interaction.
    assert medrec.coding.hccs_for(["E11.22", "E11.9", "I50.9"]) == [18, 85]
    assert medrec.coding.risk_score(["I50.9", "J44.9"], 72, "F") == round(
        0.386 + 0.331 + 0.335 + 0.155, 3
    )
    assert medrec.coding.risk_score([], 95, "M") == 0.845
