"""The medical-records example as the demo drives it.

The example is ordinary user code beside its spec: the ``medrec`` package holds the note
generator, the step handlers and the training. The demo imports it the way the engine
imports handlers, from the spec's folder, and reaches it only through this module.

It ships inside the package (``streamdag/demo/medical_records``; a source checkout shows
it as ``examples/medical_records`` too), so ``streamdag demo`` runs from a pip install.
Its models are trained beside its spec: in a checkout in the example's own folder, in an
install in a copy under the per-user state folder (site-packages may be read-only, and is
no place for trained models).
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from streamdag.errors import ConfigError, ExtraMissing

__all__ = ["DOCS_SEED", "EXAMPLE_DIR", "Document", "MedicalRecords", "Models", "example_dir"]

EXAMPLE_DIR = Path(__file__).resolve().parent / "medical_records"
_CHECKOUT_LINK = Path(__file__).resolve().parents[3] / "examples" / "medical_records"
DOCS_SEED = 7  # the demo's notes; training uses seed 1 and the held-out notes seed 2


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    codes: tuple[str, ...]  # the generator's ground truth
    risk_score: float


@dataclass(frozen=True)
class Models:
    """The trained models: whether this run trained them, and their held-out scores."""

    trained: bool
    seconds: float
    train_notes: int
    test_notes: int
    lines: list[str]  # a table of the scores, for a terminal
    accuracy: dict[str, float]
    report: Any  # the example's own ``medrec.train.Report``, every figure


class MedicalRecords:
    def __init__(self, root: Path = EXAMPLE_DIR) -> None:
        self.root = root.resolve()
        self.spec_path = self.root / "pipeline.yaml"
        self.models_dir = self.root / "models"
        if not self.spec_path.is_file():
            raise ConfigError(
                f"the demo's example is missing: no {self.spec_path} (reinstall streamdag, "
                "or name a folder holding the example's pipeline.yaml and medrec/)"
            )

    def _module(self, name: str) -> ModuleType:
        # The engine puts a spec's folder on sys.path to import its handlers; so do we.
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        with _missing_packages():
            return importlib.import_module(f"medrec.{name}")

    def ensure_models(self) -> Models:
        """Train the three models unless models made by the current code are in place."""
        train = self._module("train")
        with _missing_packages():
            report, trained = train.ensure_models(self.models_dir)
        return self._models(train, report, trained)

    def train(self, *, train_notes: int, test_notes: int) -> Models:
        """Train afresh, e.g. on fewer notes than the default."""
        train = self._module("train")
        with _missing_packages():
            report = train.train(self.models_dir, train_notes=train_notes, test_notes=test_notes)
        return self._models(train, report, True)

    def documents(self, n: int, seed: int = DOCS_SEED) -> list[Document]:
        notes = self._module("notes").generate(n, seed=seed)
        return [
            Document(f"doc-{i:04d}", note.text, tuple(note.truth.codes), note.truth.risk_score)
            for i, note in enumerate(notes)
        ]

    @staticmethod
    def _models(train: ModuleType, report: Any, trained: bool) -> Models:
        return Models(
            trained=trained,
            seconds=float(report.seconds),
            train_notes=int(report.train_notes),
            test_notes=int(report.test_notes),
            lines=list(train.describe(report)),
            accuracy={m.name: float(m.accuracy) for m in report.models},
            report=report,
        )


def example_dir(state_dir: Path) -> Path:
    """The folder the demo runs the example from: its own in a source checkout, else a copy
    in ``state_dir``, refreshed at every call so an upgrade's code takes effect (its
    models, trained by other code, are then trained again)."""
    if _CHECKOUT_LINK.resolve() == EXAMPLE_DIR:
        return EXAMPLE_DIR
    target = state_dir / "demo" / "medical_records"
    shutil.copytree(
        EXAMPLE_DIR,
        target,
        ignore=shutil.ignore_patterns("__pycache__", "models"),
        dirs_exist_ok=True,
    )
    return target


@contextlib.contextmanager
def _missing_packages() -> Iterator[None]:
    try:
        yield
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in ("skl2onnx", "onnx", "sklearn", "onnxruntime"):
            raise ExtraMissing("the demo (its models' training)", "demo", exc.name or "") from exc
        raise ConfigError(f"the medical-records example cannot run: {exc}") from exc
