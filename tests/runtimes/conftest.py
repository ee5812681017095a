"""Builders of small real models on disk: handler modules, ONNX files, joblib estimators."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from streamdag.runtimes import PythonModel, PythonModelSpec

from ._helpers import LABELS, TEXTS


@pytest.fixture
def features() -> tuple[np.ndarray, np.ndarray]:
    """Forty rows of three float32 features and a binary label that depends on the first."""
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


@pytest.fixture
def logistic(features: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    return LogisticRegression().fit(*features)


@pytest.fixture
def logistic_file(tmp_path: Path, logistic: LogisticRegression) -> Path:
    path = tmp_path / "logistic.joblib"
    joblib.dump(logistic, path)
    return path


@pytest.fixture
def text_pipeline() -> Pipeline:
    texts = [text.decode() for text in TEXTS]
    return Pipeline([("tfidf", TfidfVectorizer()), ("clf", LogisticRegression())]).fit(
        texts, LABELS
    )


@pytest.fixture
def text_file(tmp_path: Path, text_pipeline: Pipeline) -> Path:
    path = tmp_path / "text.joblib"
    joblib.dump(text_pipeline, path)
    return path


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Write a handler module under a fresh name into an importable folder; return the name."""
    folder = tmp_path / "handlers"
    folder.mkdir()
    monkeypatch.setattr(sys, "path", [str(folder), *sys.path])

    def write(source: str) -> str:
        name = f"handlers_{uuid.uuid4().hex}"
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


@pytest.fixture
def python_model() -> Callable[[str], PythonModel]:
    """A loaded python-runtime model for ``module:attr``."""

    def make(handler: str) -> PythonModel:
        model = PythonModel("m", PythonModelSpec(runtime="python", handler=handler))
        model.load()
        return model

    return make
