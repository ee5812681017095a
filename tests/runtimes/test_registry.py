from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydantic
import pytest

import streamdag.runtimes
from streamdag.runtimes import (
    ModelSpec,
    OipModel,
    OnnxModel,
    PythonModel,
    SklearnModel,
    create_model,
)

SPECS: pydantic.TypeAdapter[ModelSpec] = pydantic.TypeAdapter(ModelSpec)


def test_public_api_is_locked() -> None:
    assert sorted(streamdag.runtimes.__all__) == [
        "BatchConfig",
        "CustomModel",
        "CustomModelSpec",
        "DATATYPES",
        "ENTRY_POINT_GROUP",
        "Model",
        "ModelMetadata",
        "ModelSpec",
        "OipModel",
        "OipModelSpec",
        "OnnxModel",
        "OnnxModelSpec",
        "PythonModel",
        "PythonModelSpec",
        "RuntimeSpec",
        "SklearnModel",
        "SklearnModelSpec",
        "TensorDecl",
        "TensorSpec",
        "check_inputs",
        "check_outputs",
        "create_model",
        "datatype_of",
        "get_runtime",
        "register_runtime",
        "resolve_uri",
        "runtime_names",
    ]
    for name in streamdag.runtimes.__all__:
        assert hasattr(streamdag.runtimes, name), name


def test_runtime_is_picked_by_spec(tmp_path: Path) -> None:
    python = create_model(
        "a", SPECS.validate_python({"runtime": "python", "handler": "m:f"}), tmp_path
    )
    onnx = create_model("b", SPECS.validate_python({"runtime": "onnx", "uri": "m.onnx"}), tmp_path)
    sklearn = create_model(
        "c", SPECS.validate_python({"runtime": "sklearn", "uri": "m.pkl"}), tmp_path
    )
    assert isinstance(python, PythonModel)
    assert isinstance(onnx, OnnxModel)
    assert isinstance(sklearn, SklearnModel)


def test_relative_uri_is_resolved_against_base_dir(tmp_path: Path) -> None:
    relative = SPECS.validate_python({"runtime": "onnx", "uri": "models/m.onnx"})
    absolute = SPECS.validate_python({"runtime": "sklearn", "uri": "/srv/m.joblib"})
    onnx = create_model("a", relative, tmp_path)
    sklearn = create_model("b", absolute, tmp_path)
    assert isinstance(onnx, OnnxModel)
    assert isinstance(sklearn, SklearnModel)
    assert onnx.path == tmp_path / "models" / "m.onnx"
    assert sklearn.path == Path("/srv/m.joblib")


def test_loading_a_relative_sklearn_uri(tmp_path: Path, logistic_file: Path) -> None:
    spec = SPECS.validate_python({"runtime": "sklearn", "uri": logistic_file.name})
    model = create_model("clf", spec, logistic_file.parent)
    model.load()
    assert model.predict({"input": np.zeros((2, 3))})["predict"].shape == (2,)


def test_python_handlers_beside_the_spec_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "registry_test_handlers.py").write_text(
        "def run(inputs):\n    return {'y': -inputs['x']}\n"
    )
    spec = SPECS.validate_python({"runtime": "python", "handler": "registry_test_handlers:run"})
    model = create_model("neg", spec, tmp_path)
    model.load()
    np.testing.assert_array_equal(model.predict({"x": np.arange(3)})["y"], [0, -1, -2])


def test_oip_runtime_is_picked_by_spec(tmp_path: Path) -> None:
    spec = SPECS.validate_python({"runtime": "oip", "url": "localhost:8001", "model": "ner"})
    assert isinstance(create_model("ner", spec, tmp_path), OipModel)
