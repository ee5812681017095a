"""Train the three clause models, export them to ONNX, and measure them on held-out notes.

    sections   history | medications | vitals | assessment | plan      (every clause)
    entities   none | one of 14 conditions                               (every clause)
    assertion  present | absent | possible | family    (clauses that name a condition)

Each is ``TfidfVectorizer(word 1-2 grams) -> LogisticRegression`` fitted on the clauses of
``train_notes`` generated notes (seed 1) and scored, as exported ONNX run by onnxruntime,
on the clauses of ``test_notes`` other notes (seed 2). The whole pipeline's logic is then
run offline on the held-out notes to score the documents' codes and routes. Everything,
with a fingerprint of the code and settings that made it, goes to ``metrics.json`` beside
the models; ``ensure_models`` retrains only when that fingerprint changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from medrec import steps
from medrec.notes import NONE, Clause, Note, generate
from medrec.text import clauses

__all__ = [
    "MODELS",
    "DocumentScore",
    "ModelScore",
    "Report",
    "ensure_models",
    "main",
    "train",
]

MODELS = ("sections", "entities", "assertion")
TRAIN_SEED, TEST_SEED = 1, 2
TRAIN_NOTES, TEST_NOTES = 1000, 400
METRICS = "metrics.json"

_LABEL: dict[str, Callable[[Clause], str]] = {
    "sections": lambda c: c.section,
    "entities": lambda c: c.concept,
    "assertion": lambda c: c.assertion,
}


@dataclass(frozen=True)
class ModelScore:
    name: str
    classes: int
    train_clauses: int
    test_clauses: int
    accuracy: float  # of the exported ONNX model on held-out clauses
    macro_f1: float
    majority_baseline: float  # accuracy of always answering the most common class
    onnx_agreement: float  # share of held-out labels where ONNX and scikit-learn agree


@dataclass(frozen=True)
class DocumentScore:
    notes: int
    codes_exact: float  # notes whose code set equals the truth
    codes_micro_f1: float
    risk_exact: float  # notes whose risk score equals the truth
    review_rate: float  # notes the gate sent to review
    auto_codes_exact: float  # codes_exact among the notes the gate accepted


@dataclass(frozen=True)
class Report:
    models: list[ModelScore]
    documents: DocumentScore
    train_notes: int
    test_notes: int
    seconds: float
    fingerprint: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Report:
        data = json.loads(text)
        return cls(
            models=[ModelScore(**m) for m in data["models"]],
            documents=DocumentScore(**data["documents"]),
            train_notes=data["train_notes"],
            test_notes=data["test_notes"],
            seconds=data["seconds"],
            fingerprint=data["fingerprint"],
        )


def fingerprint() -> str:
    """Changes whenever the generator, the steps, the training or a library version does."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    for package in ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy"):
        try:
            digest.update(f"{package}=={version(package)}".encode())
        except PackageNotFoundError:
            digest.update(f"{package} missing".encode())
    return digest.hexdigest()[:16]


def ensure_models(
    out_dir: Path, *, train_notes: int = TRAIN_NOTES, test_notes: int = TEST_NOTES
) -> tuple[Report, bool]:
    """The report of the models in ``out_dir``, training them first if they are missing or
    were made by other code (whatever the number of notes they were trained on); the flag
    says whether it trained."""
    metrics = out_dir / METRICS
    wanted = fingerprint()
    if metrics.is_file() and all((out_dir / f"{m}.onnx").is_file() for m in MODELS):
        try:
            report = Report.from_json(metrics.read_text())
        except (ValueError, KeyError, TypeError):
            report = None
        if report is not None and report.fingerprint == wanted:
            return report, False
    return train(out_dir, train_notes=train_notes, test_notes=test_notes), True


def train(out_dir: Path, *, train_notes: int = TRAIN_NOTES, test_notes: int = TEST_NOTES) -> Report:
    """Fit, export and score the three models; write them and ``metrics.json`` to ``out_dir``."""
    import onnxruntime as ort
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline

    from medrec.export import clause_classifier

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    train_set = generate(train_notes, seed=TRAIN_SEED)
    test_set = generate(test_notes, seed=TEST_SEED)
    fitted = {}
    for name in MODELS:
        x, y = _examples(train_set, name)
        pipe = make_pipeline(
            # \b\w+\b keeps one-letter words ("type 2", "a fib") as onnxruntime's tokenizer
            # does; scikit-learn's default pattern drops them and the two would disagree.
            TfidfVectorizer(
                ngram_range=(1, 2),
                sublinear_tf=True,
                lowercase=False,
                min_df=2,
                token_pattern=r"\b\w+\b",
            ),
            LogisticRegression(C=10.0, max_iter=2000),
        )
        fitted[name] = (pipe.fit(x, y), len(x))
        meta = {"task": name, "classes": " ".join(str(c) for c in pipe.classes_)}
        (out_dir / f"{name}.onnx").write_bytes(
            clause_classifier(pipe, name, meta).SerializeToString()
        )
    sessions = {
        name: ort.InferenceSession(
            str(out_dir / f"{name}.onnx"), providers=["CPUExecutionProvider"]
        )
        for name in MODELS
    }
    # One pass of the held-out notes through the exported models, as the pipeline runs
    # them, gives both the clause scores and the document scores.
    labels, documents = score_documents(test_set, sessions)
    scores = []
    for name, (pipe, train_clauses) in fitted.items():
        x_test, y_test = _examples(test_set, name)
        expected = np.array(y_test, dtype=object)
        predicted = np.array(_examples(test_set, name, labels[name])[1], dtype=object)
        majority = Counter(y_test).most_common(1)[0][1] / len(y_test)
        scores.append(
            ModelScore(
                name=name,
                classes=len(pipe.classes_),
                train_clauses=train_clauses,
                test_clauses=len(x_test),
                accuracy=_round(np.mean(predicted == expected)),
                macro_f1=_round(f1_score(expected, predicted, average="macro")),
                majority_baseline=_round(majority),
                onnx_agreement=_round(np.mean(predicted == pipe.predict(x_test))),
            )
        )
    report = Report(
        models=scores,
        documents=documents,
        train_notes=train_notes,
        test_notes=test_notes,
        seconds=round(time.perf_counter() - started, 1),
        fingerprint=fingerprint(),
    )
    (out_dir / METRICS).write_text(report.to_json())
    return report


def score_documents(
    notes: Sequence[Note], sessions: dict[str, Any]
) -> tuple[dict[str, list[list[str]]], DocumentScore]:
    """Run the pipeline's logic in this process (the same step functions, the same ONNX
    models) over ``notes``; return each model's labels per note and clause, and the
    scores of the answers against the notes' labels."""
    text = np.array([n.text.encode() for n in notes], dtype=object)
    prepared = steps.normalize({"text": text})
    joined: dict[str, Any] = dict(prepared)
    labels: dict[str, list[list[str]]] = {}
    for name, prefix in (
        ("sections", "section"),
        ("entities", "concept"),
        ("assertion", "assertion"),
    ):
        label, score = sessions[name].run(["label", "score"], {"clauses": prepared["clauses"]})
        labels[name] = [
            [str(v) for v in row[: len(n.clauses)]] for row, n in zip(label, notes, strict=True)
        ]
        joined[prefix] = np.array([[v.encode() for v in row] for row in label], dtype=object)
        joined[f"{prefix}_score"] = score
    coded = steps.code_icd10(joined)
    routed = steps.gate(coded)
    risk = steps.hcc_risk(coded)
    exact = tp = fp = fn = risk_ok = auto = auto_ok = 0
    for i, note in enumerate(notes):
        got = set(coded["codes"][i].decode().split())
        want = set(note.truth.codes)
        tp, fp, fn = tp + len(got & want), fp + len(got - want), fn + len(want - got)
        exact += got == want
        risk_ok += abs(float(risk["risk_score"][i]) - note.truth.risk_score) < 1e-3
        if routed["accepted"][i]:
            auto += 1
            auto_ok += got == want
    n = len(notes)
    return labels, DocumentScore(
        notes=n,
        codes_exact=_round(exact / n),
        codes_micro_f1=_round(2 * tp / (2 * tp + fp + fn)),
        risk_exact=_round(risk_ok / n),
        review_rate=_round(1 - auto / n),
        auto_codes_exact=_round(auto_ok / auto if auto else 0.0),
    )


def _examples(
    notes: Sequence[Note], model: str, predicted: list[list[str]] | None = None
) -> tuple[list[str], list[str]]:
    """The clause texts (as the pipeline's normalize step makes them) and their labels,
    or the ``predicted`` labels (per note and clause) in the same order."""
    x: list[str] = []
    y: list[str] = []
    for k, note in enumerate(notes):
        parts = clauses(note.text)
        if len(parts) != len(note.clauses):
            raise AssertionError(f"{note.id}: {len(parts)} clauses, {len(note.clauses)} labels")
        for j, (text, clause) in enumerate(zip(parts, note.clauses, strict=True)):
            if model == "assertion" and clause.concept == NONE:
                continue
            x.append(text)
            y.append(predicted[k][j] if predicted is not None else _LABEL[model](clause))
    return x, y


def _round(value: Any) -> float:
    return round(float(value), 4)


def describe(report: Report) -> list[str]:
    """The report as lines for a terminal or a document."""
    lines = [
        f"{'model':<10} {'classes':>7} {'train':>7} {'test':>6} {'accuracy':>9} "
        f"{'macro-F1':>9} {'baseline':>9} {'onnx=sklearn':>13}"
    ]
    for m in report.models:
        lines.append(
            f"{m.name:<10} {m.classes:>7} {m.train_clauses:>7} {m.test_clauses:>6} "
            f"{m.accuracy:>9.4f} {m.macro_f1:>9.4f} {m.majority_baseline:>9.4f} "
            f"{m.onnx_agreement:>13.4f}"
        )
    d = report.documents
    lines.append(
        f"{d.notes} held-out notes through the pipeline's steps: codes exact {d.codes_exact:.1%} "
        f"(micro-F1 {d.codes_micro_f1:.4f}), risk score exact {d.risk_exact:.1%},"
    )
    lines.append(
        f"  routed to review {d.review_rate:.1%}, codes exact among the auto-coded "
        f"{d.auto_codes_exact:.1%}"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "models")
    parser.add_argument("--train-notes", type=int, default=TRAIN_NOTES)
    parser.add_argument("--test-notes", type=int, default=TEST_NOTES)
    args = parser.parse_args(argv)
    report = train(args.out, train_notes=args.train_notes, test_notes=args.test_notes)
    print(f"trained in {report.seconds:.1f} s; models and {METRICS} in {args.out}")
    print("\n".join(describe(report)))
    return 0
