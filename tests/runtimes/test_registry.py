from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydantic
import pytest

import streamdag.runtimes
import streamdag.runtimes.registry as registry_module
from streamdag.errors import ConfigError, SpecError
from streamdag.pipeline import load_spec
from streamdag.runtimes import (
    Model,
    ModelSpec,
    OipModel,
    OnnxModel,
    PythonModel,
    PythonModelSpec,
    RuntimeSpec,
    SklearnModel,
    create_model,
    get_runtime,
    register_runtime,
    runtime_names,
)

from ._helpers import objects

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


SHOUT = """
import numpy as np
from streamdag.runtimes import Model, ModelMetadata, RuntimeSpec, TensorSpec


class ShoutSpec(RuntimeSpec):
    suffix: str = "!"


class Shout(Model):
    spec_class = ShoutSpec

    def __init__(self, name, spec):
        self.name, self.spec = name, spec

    def load(self):
        pass

    def metadata(self):
        return ModelMetadata(self.name, "shout", [TensorSpec("text", "BYTES", [-1])], [])

    def predict(self, inputs):
        suffix = self.spec.suffix.encode()
        out = np.empty(len(inputs["text"]), dtype=object)
        out[:] = [text.upper() + suffix for text in inputs["text"]]
        return {"text": out}


def helper():
    pass


class NoSpec(Model):
    def predict(self, inputs):
        return inputs
"""

PIPELINE = """
name: plug
models:
  m: {runtime: RUNTIME}
steps:
  - {name: s, model: m}
"""


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry of its own for the test, which discovers entry points afresh."""
    monkeypatch.setattr(registry_module, "_REGISTRY", registry_module._Registry())


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: None) -> Callable[..., str]:
    """``install(dist, {name: "SHOUT:attr"})``: a distribution on sys.path whose entry
    points declare runtimes, as pip would leave it, with the SHOUT module (whose name it
    returns) beside it."""
    site = tmp_path / "site"
    site.mkdir()
    module = f"shout_runtime_{uuid.uuid4().hex[:8]}"
    (site / f"{module}.py").write_text(SHOUT)
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])

    def make(dist: str, entries: dict[str, str]) -> str:
        info = site / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = [f"{name} = {target.replace('SHOUT', module)}" for name, target in entries.items()]
        (info / "entry_points.txt").write_text("[streamdag.runtimes]\n" + "\n".join(lines) + "\n")
        return module

    return make


def _pipeline(tmp_path: Path, runtime: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE.replace("RUNTIME", runtime))
    return path


def test_a_plugin_is_a_runtime_by_its_entry_point_name(
    tmp_path: Path, install: Callable[..., str]
) -> None:
    module = install("shout-runtime", {"shout": "SHOUT:Shout"})
    assert runtime_names()[:5] == ["python", "onnx", "sklearn", "oip", "custom"]
    assert "shout" in runtime_names()
    assert module not in sys.modules  # imported when a pipeline uses it
    spec = load_spec(_pipeline(tmp_path, "shout, suffix: '?'"))
    model = create_model("m", spec.models["m"], spec.base_dir)
    model.load()
    assert list(model.predict({"text": objects(b"hi")})["text"]) == [b"HI?"]
    with pytest.raises(SpecError, match=r"models\.m\.volume: unknown field"):
        load_spec(_pipeline(tmp_path, "shout, volume: 11"))


def test_a_broken_plugin_fails_only_the_pipelines_using_it_naming_it(
    tmp_path: Path, install: Callable[..., str]
) -> None:
    install("broken-runtime", {"broken": "no_such_module_xyz:Thing"})
    with pytest.raises(SpecError) as info:
        load_spec(_pipeline(tmp_path, "broken"))
    assert info.value.field == "models.m.runtime"
    assert info.value.problem == (
        "runtime plug-in 'broken' (no_such_module_xyz:Thing of broken-runtime 0.1) cannot be "
        "imported: ModuleNotFoundError: No module named 'no_such_module_xyz'"
    )
    with pytest.raises(ConfigError, match="cannot be imported"):  # once loaded, always so
        get_runtime("broken")
    assert load_spec(_pipeline(tmp_path, "python, handler: 'json:dumps'")).models["m"]


@pytest.mark.parametrize(
    ("target", "fault"),
    [
        ("SHOUT:helper", "is a function, not a subclass of streamdag.runtimes.Model"),
        ("SHOUT:ShoutSpec", "is a class ShoutSpec, not a subclass of streamdag.runtimes.Model"),
        (
            "SHOUT:NoSpec",
            "NoSpec.spec_class must be a subclass of streamdag.runtimes.RuntimeSpec, the class "
            "of its declaration",
        ),
    ],
)
def test_a_plugin_that_is_not_a_runtime_is_refused_by_name(
    install: Callable[..., str], target: str, fault: str
) -> None:
    install("odd-runtime", {"odd": target})
    with pytest.raises(ConfigError) as info:
        get_runtime("odd")
    assert str(info.value).startswith("runtime plug-in 'odd' (")
    assert str(info.value).endswith(fault)


def test_two_plugins_of_one_name_are_both_named(install: Callable[..., str]) -> None:
    install("first-runtime", {"shout": "SHOUT:Shout"})
    install("second-runtime", {"shout": "SHOUT:Shout"})
    with pytest.raises(ConfigError, match="two plug-ins claim runtime 'shout'") as info:
        get_runtime("shout")
    assert "first-runtime" in str(info.value)
    assert "second-runtime" in str(info.value)


def test_a_plugin_cannot_replace_a_builtin(
    install: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    install("sneaky-runtime", {"python": "SHOUT:Shout"})
    assert get_runtime("python") is PythonModel
    assert "runtime plug-in 'python'" in caplog.text
    assert "is a built-in runtime" in caplog.text


def test_register_runtime_in_code(tmp_path: Path, registry: None) -> None:
    class Double(Model):
        spec_class = RuntimeSpec

        def __init__(self, name: str, spec: RuntimeSpec) -> None:
            self.name = name

        def load(self) -> None:
            pass

        def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"y": inputs["x"] * 2}

    register_runtime("double", Double)
    spec = load_spec(_pipeline(tmp_path, "double"))
    model = create_model("m", spec.models["m"], spec.base_dir)
    assert isinstance(model, Double)
    with pytest.raises(ConfigError, match="runtime 'double' is already registered"):
        register_runtime("double", Double)
    with pytest.raises(ConfigError, match="takes only runtime: python, but the runtime is named"):
        register_runtime("snake", PythonModel)


def test_a_declaration_of_another_runtime_is_refused(tmp_path: Path) -> None:
    onnx = SPECS.validate_python({"runtime": "onnx", "uri": "m.onnx"})
    wrong = PythonModelSpec.model_construct(**{**dict(onnx), "runtime": "onnx"})
    with pytest.raises(ConfigError, match="runtime 'onnx' takes a OnnxModelSpec"):
        create_model("m", wrong, tmp_path)
