"""A deterministic generator of synthetic outpatient notes with ground-truth labels.

Each note is written from a made-up patient: age, sex, chronic conditions, perhaps an
acute complaint. Its clauses fall into sections (history, medications, vitals,
assessment, plan), mention at most one condition each, and state it as present, absent
("denies chest pain"), possible ("rule out pneumonia") or of a relative ("mother with
diabetes"). Some notes have full headers, some short ones, some none; a few condition
names carry a typo. Labels: per clause (section, concept, assertion, for training the
models) and per note (ICD-10 codes, the codes assessed or treated this visit, HCCs and
risk score, for judging the pipeline's answers).

The same ``seed`` gives the same notes on every machine and Python version: one
``random.Random`` drives everything, and nothing iterates over a set.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace

from medrec.coding import ACUTE, CHRONIC, CONCEPTS, assign_codes, hccs_for, risk_score
from medrec.phrases import (
    ABSENT,
    ACRONYMS,
    ASSESS_ABSENT,
    ASSESS_ACUTE,
    ASSESS_CHRONIC,
    COMPLAINT,
    FAMILY,
    HEADERS,
    HISTORY_PRESENT,
    MEDS,
    PLAN_OTHER,
    PLAN_POSSIBLE,
    PLAN_PRESENT,
    PLAN_TAKING,
    POSSIBLE,
    POSSIBLE_CANDIDATES,
    PREVALENCE,
    SOCIAL,
    SPECIALIST,
)
from medrec.text import MAX_CLAUSES

__all__ = ["ASSERTIONS", "NONE", "SECTIONS", "Clause", "Note", "Truth", "generate"]

SECTIONS = ("history", "medications", "vitals", "assessment", "plan")
ASSERTIONS = ("present", "absent", "possible", "family")
NONE = "none"

TYPO_RATE = 0.05  # share of condition mentions written with a typo


@dataclass(frozen=True)
class Clause:
    text: str  # lower-case, as the note's clause reads after normalisation
    section: str
    concept: str  # a key of ``coding.CONCEPTS``, or NONE
    assertion: str  # one of ASSERTIONS, or NONE when the clause names no condition


@dataclass(frozen=True)
class Truth:
    codes: tuple[str, ...]  # ICD-10-CM codes of every affirmed condition
    supported: tuple[str, ...]  # codes of the conditions assessed or treated this visit
    hccs: tuple[int, ...]
    risk_score: float
    age: int
    sex: str


@dataclass(frozen=True)
class Note:
    id: str
    text: str
    clauses: tuple[Clause, ...]
    truth: Truth


def generate(n: int, seed: int = 0) -> list[Note]:
    """``n`` notes; the same ``seed`` always gives the same notes."""
    rng = random.Random(seed)
    return [_Writer(rng).note(f"note-{seed}-{i:05d}") for i in range(n)]


class _Writer:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.age = rng.randint(65, 94)
        self.sex = rng.choice(("F", "M"))
        self.he, self.his = ("he", "his") if self.sex == "M" else ("she", "her")
        chronic = [c for c in CHRONIC if rng.random() < PREVALENCE[c]]
        self.chronic = chronic or [rng.choice(CHRONIC)]
        self.acute = rng.choice(ACUTE) if rng.random() < 0.4 else None
        self.present = [*self.chronic, *([self.acute] if self.acute else [])]
        self.style = rng.choices(("full", "short", "none"), weights=(4, 3, 3))[0]
        self.taking: dict[str, list[str]] = {}  # condition -> medications on the list

    # -- a clause ------------------------------------------------------------------------
    def mention(self, concept: str) -> str:
        phrase = self.rng.choice(CONCEPTS[concept].synonyms)
        return _typo(self.rng, phrase) if self.rng.random() < TYPO_RATE else phrase

    def clause(
        self, template: str, section: str, concept: str = NONE, assertion: str = NONE, **kw: str
    ) -> Clause:
        values = {"he": self.he, "his": self.his, "n": str(self.rng.randint(2, 6)), **kw}
        if concept != NONE:
            values["x"] = self.mention(concept)
        return Clause(template.format(**values), section, concept, assertion)

    def pick(self, templates: list[str]) -> str:
        return self.rng.choice(templates)

    # -- the note ------------------------------------------------------------------------
    def note(self, note_id: str) -> Note:
        rng = self.rng
        mentioned: list[str] = []
        assessed: list[str] = []
        hpi = self.history(mentioned)
        pmh = [
            self.clause("{x}", "history", c, "present")
            for c in self.chronic
            if rng.random() < 0.85 and c not in mentioned
        ]
        mentioned += [c.concept for c in pmh]
        family = [
            self.clause(self.pick(FAMILY), "history", c, "family")
            for c in rng.sample(CHRONIC, rng.choice((0, 0, 1, 2)))
        ]
        medications = self.medications()
        assessment = self.assessment(mentioned, assessed)
        plan = self.plan(assessed)
        parts = [
            ("hpi", hpi, ". "),
            ("pmh", pmh, ", "),
            ("fh", family, ". "),
            ("meds", medications, ". "),
            ("vitals", self.vitals(), ". "),
            ("assessment", assessment, ". "),
            ("plan", plan, ". "),
        ]
        text, clauses = self.render(parts)
        codes = assign_codes(self.present)
        supported = assign_codes(assessed)
        truth = Truth(
            codes=tuple(codes),
            supported=tuple(supported),
            hccs=tuple(hccs_for(supported)),
            risk_score=risk_score(supported, self.age, self.sex),
            age=self.age,
            sex=self.sex,
        )
        assert len(clauses) <= MAX_CLAUSES, f"{note_id} has {len(clauses)} clauses"
        return Note(note_id, text, tuple(clauses), truth)

    def history(self, mentioned: list[str]) -> list[Clause]:
        rng = self.rng
        sex = rng.choice(("male", "man")) if self.sex == "M" else rng.choice(("female", "woman"))
        opener = f"{self.age} year old {sex}"
        out: list[Clause] = []
        if self.acute is not None and rng.random() < 0.5:
            out.append(self.clause(opener + " presents with {x}", "history", self.acute, "present"))
            mentioned.append(self.acute)
        else:
            reason = rng.choice(("presents for follow up", "here for a routine visit"))
            out.append(self.clause(f"{opener} {reason}", "history"))
            if self.acute is not None:
                out.append(self.clause(self.pick(COMPLAINT), "history", self.acute, "present"))
                mentioned.append(self.acute)
        for concept in rng.sample(self.chronic, min(len(self.chronic), rng.choice((0, 1, 2)))):
            out.append(self.clause(self.pick(HISTORY_PRESENT), "history", concept, "present"))
            mentioned.append(concept)
        absent = [c for c in ACUTE if c not in self.present]
        absent += [c for c in CHRONIC if c not in self.present and rng.random() < 0.1]
        for concept in rng.sample(absent, min(len(absent), rng.randint(1, 3))):
            out.append(self.clause(self.pick(ABSENT), "history", concept, "absent"))
        for template in rng.sample(SOCIAL, rng.randint(0, 2)):
            out.append(self.clause(template, "history"))
        return out

    def medications(self) -> list[Clause]:
        rng = self.rng
        options = [(c, m) for c in self.chronic for m in MEDS.get(c, [])]
        chosen = rng.sample(options, min(len(options), rng.randint(1, 5))) if options else []
        if rng.random() < 0.3:
            chosen.append(("", ("aspirin", ("81 mg",), "daily")))
        if not chosen:
            return [self.clause("no current medications", "medications")]
        for concept, (name, _, _) in chosen:
            self.taking.setdefault(concept, []).append(name)
        return [
            self.clause(f"{name} {rng.choice(doses)} {when}", "medications")
            for _, (name, doses, when) in chosen
        ]

    def vitals(self) -> list[Clause]:
        rng = self.rng
        bmi = rng.uniform(40.5, 48.0) if "morbid_obesity" in self.chronic else rng.uniform(21, 35)
        options = [
            f"{rng.choice(('bp', 'blood pressure'))} {rng.randint(110, 170)}/{rng.randint(60, 98)}",
            f"{rng.choice(('hr', 'heart rate', 'pulse'))} {rng.randint(55, 105)}",
            f"{rng.choice(('temp', 'temperature'))} {rng.uniform(97.0, 100.4):.1f} f",
            f"{rng.choice(('rr', 'respiratory rate'))} {rng.randint(12, 22)}",
            f"{rng.choice(('spo2', 'o2 sat'))} {rng.randint(89, 99)}% on room air",
            f"weight {rng.randint(50, 140)} kg",
            f"bmi {bmi:.1f}",
        ]
        return [self.clause(v, "vitals") for v in rng.sample(options, rng.randint(3, 6))]

    def assessment(self, mentioned: list[str], assessed: list[str]) -> list[Clause]:
        rng = self.rng
        out: list[Clause] = []
        for concept in self.present:
            # The acute problem is always assessed; a condition the note names nowhere else
            # has to be, or the note would not show it.
            if concept == self.acute or concept not in mentioned or rng.random() < 0.7:
                templates = ASSESS_ACUTE if concept in ACUTE else ASSESS_CHRONIC
                out.append(self.clause(self.pick(templates), "assessment", concept, "present"))
                assessed.append(concept)
        others = [c for c in POSSIBLE_CANDIDATES if c not in self.present]
        if others and rng.random() < 0.15:
            possible = rng.choice(others)
            out.append(self.clause(self.pick(POSSIBLE), "assessment", possible, "possible"))
        absent = [c for c in ("pneumonia", "heart_failure", "afib") if c not in self.present]
        if absent and rng.random() < 0.2:
            concept = rng.choice(absent)
            out.append(self.clause(self.pick(ASSESS_ABSENT), "assessment", concept, "absent"))
        rng.shuffle(out)
        return out

    def plan(self, assessed: list[str]) -> list[Clause]:
        rng = self.rng
        out: list[Clause] = []
        for concept in self.chronic:
            if rng.random() >= 0.25:
                continue
            taking = self.taking.get(concept, [])
            if taking and rng.random() < 0.6:
                template, med = rng.choice(PLAN_TAKING), rng.choice(taking)
            else:
                new = [m[0] for m in MEDS.get(concept, []) if m[0] not in taking]
                templates = [t for t in PLAN_PRESENT if "{med}" not in t or new]
                if concept not in SPECIALIST:
                    templates = [t for t in templates if "{specialist}" not in t]
                template, med = rng.choice(templates), rng.choice(new or [""])
            specialist = SPECIALIST.get(concept, "")
            out.append(
                self.clause(template, "plan", concept, "present", med=med, specialist=specialist)
            )
            if concept not in assessed:
                assessed.append(concept)
        others = [c for c in PLAN_POSSIBLE if c not in self.present]
        if others and rng.random() < 0.05:
            concept = rng.choice(others)
            templates = PLAN_POSSIBLE[concept]
            out.append(self.clause(self.pick(templates), "plan", concept, "possible"))
        for template in rng.sample(PLAN_OTHER, rng.randint(1, 3)):
            out.append(self.clause(template, "plan"))
        return out

    # -- text ----------------------------------------------------------------------------
    def render(self, parts: list[tuple[str, list[Clause], str]]) -> tuple[str, list[Clause]]:
        headers = HEADERS[self.style]
        lines: list[str] = []
        clauses: list[Clause] = []
        for kind, items, separator in parts:
            if not items:
                continue
            if kind == "pmh" and not headers:
                lead = "past medical history significant for "
                items = [replace(items[0], text=lead + items[0].text), *items[1:]]
            body = (
                self.join(items)
                if separator == ". "
                else _sentence(separator.join(c.text for c in items))
            )
            header = headers.get(kind)
            if kind == "plan" and header == "A/P:" and lines and lines[-1].startswith(header):
                lines[-1] += f" {body}."  # one "A/P:" section holds both
            else:
                lines.append(f"{header} {body}." if header else body + ".")
            clauses += items
        blank = "\n" if headers else "\n\n"
        return ACRONYMS.sub(lambda m: m.group(0).upper(), blank.join(lines)), clauses

    def join(self, items: list[Clause]) -> str:
        """Sentences; now and then "reports X but denies Y" in one."""
        out = _sentence(items[0].text)
        for before, item in itertools.pairwise(items):
            pair = before.assertion == "present" and item.assertion == "absent"
            if pair and self.rng.random() < 0.3:
                out += " but " + item.text
                continue
            out += ". " + _sentence(item.text)
        return out


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _typo(rng: random.Random, phrase: str) -> str:
    """Swap two inner letters of the phrase's longest word, or drop one, as a hurried typist
    would."""
    words = phrase.split()
    i = max(range(len(words)), key=lambda k: len(words[k]))
    word = words[i]
    if len(word) < 4:
        return phrase
    j = rng.randint(1, len(word) - 2)
    if rng.random() < 0.5:
        words[i] = word[:j] + word[j + 1 :]
    else:
        j = min(j, len(word) - 3) if len(word) > 4 else 1
        words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    return " ".join(words)
