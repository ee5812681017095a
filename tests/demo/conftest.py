"""The medical-records example, copied to a temporary folder under a fresh pipeline name and
trained once per session on fewer notes than the demo uses (seconds, not tens of seconds)."""

from __future__ import annotations

import importlib
import shutil
import sys
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from demo_support import Trained

from streamdag.demo import EXAMPLE_DIR, MedicalRecords

TRAIN_NOTES, TEST_NOTES = 300, 150


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("medical_records")
    shutil.copy(EXAMPLE_DIR / "pipeline.yaml", root / "pipeline.yaml")
    shutil.copytree(
        EXAMPLE_DIR / "medrec", root / "medrec", ignore=shutil.ignore_patterns("__pycache__")
    )
    spec = root / "pipeline.yaml"
    name = f"medical-records-{uuid.uuid4().hex[:8]}"
    spec.write_text(spec.read_text().replace("name: medical-records", f"name: {name}", 1))
    example = MedicalRecords(root)
    yield Trained(example, example.train(train_notes=TRAIN_NOTES, test_notes=TEST_NOTES))


@pytest.fixture(scope="session")
def medrec() -> SimpleNamespace:
    """The example's modules, imported from examples/medical_records as the engine would."""
    if str(EXAMPLE_DIR) not in sys.path:
        sys.path.insert(0, str(EXAMPLE_DIR))
    names = ("coding", "notes", "steps", "text")
    return SimpleNamespace(**{n: importlib.import_module(f"medrec.{n}") for n in names})
