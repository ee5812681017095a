"""Runtime ``custom``: any Model subclass named by ``implementation``, with ``parameters``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest

from streamdag.errors import ConfigError, ModelError, SpecError
from streamdag.pipeline import load_spec
from streamdag.runtimes import CustomModel, Model, ModelSpec, create_model

from ._helpers import objects

SPECS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ModelSpec)
Write = Callable[[str], str]

CLASSES = """
import numpy as np
from streamdag.runtimes import Model


class Threshold(Model):
    def __init__(self, cut: float, label: str = "high") -> None:
        self.cut, self.label = cut, label

    def load(self):
        pass

    def predict(self, inputs):
        high = inputs["x"] > self.cut
        out = np.empty(len(high), dtype=object)
        out[:] = [self.label.encode() if h else b"low" for h in high]
        return {"label": out}


class Failing(Threshold):
    def predict(self, inputs):
        raise RuntimeError("out of memory")


class NotAModel:
    pass


def function(inputs):
    return inputs
"""


def custom(implementation: str, **parameters: Any) -> Model:
    """A loaded custom model of ``implementation`` with these parameters."""
    spec = SPECS.validate_python(
        {"runtime": "custom", "implementation": implementation, "parameters": parameters}
    )
    model = create_model("m", spec, Path.cwd())
    model.load()
    return model


def test_parameters_reach_a_plain_class_as_keyword_arguments(handler_module: Write) -> None:
    module = handler_module(CLASSES)
    model = custom(f"{module}:Threshold", cut=0.5, label="urgent")
    assert isinstance(model, CustomModel)
    labels = model.predict({"x": np.array([0.2, 0.9])})["label"]
    assert list(labels) == [b"low", b"urgent"]
    assert model.metadata().name == "m"


def test_a_runtime_class_gets_its_parameters_validated_by_its_spec_class() -> None:
    model = custom("streamdag_keywords:KeywordModel", keywords=["fever"])
    out = model.predict({"text": objects(b"High Fever", b"none")})
    assert out["keywords_count"].tolist() == [1, 0]
    with pytest.raises(ConfigError) as info:
        custom("streamdag_keywords:KeywordModel", keywords=[])
    assert str(info.value).startswith(
        "model m: parameters do not fit implementation 'streamdag_keywords:KeywordModel': "
        "keywords: List should have at least 1 item"
    )
    with pytest.raises(ConfigError, match="parameters may not set batch: write it beside"):
        custom("streamdag_keywords:KeywordModel", keywords=["a"], batch={"max_size": 2})


def test_parameters_that_do_not_fit_the_class_are_a_config_error(handler_module: Write) -> None:
    module = handler_module(CLASSES)
    with pytest.raises(ConfigError) as info:
        custom(f"{module}:Threshold", cutoff=0.5)
    assert str(info.value) == (
        f"model m: parameters do not fit implementation '{module}:Threshold': "
        "missing a required argument: 'cut'"
    )


@pytest.mark.parametrize(
    ("attr", "fault"),
    [
        ("NotAModel", "is a class, not a subclass of streamdag.runtimes.Model"),
        ("function", "is a function, not a subclass of streamdag.runtimes.Model"),
    ],
)
def test_an_implementation_that_is_not_a_model_class_is_refused(
    handler_module: Write, attr: str, fault: str
) -> None:
    module = handler_module(CLASSES)
    with pytest.raises(ConfigError) as info:
        custom(f"{module}:{attr}")
    assert str(info.value) == f"model m: implementation '{module}:{attr}' {fault}"


def test_an_unimportable_implementation_is_named(handler_module: Write, tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "name: c\nmodels:\n  m: {runtime: custom, implementation: 'no_such_pkg.models:M'}\n"
        "steps:\n  - {name: s, model: m}\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "models.m.implementation"
    assert "module 'no_such_pkg.models' not found" in info.value.problem
    module = handler_module(CLASSES)
    with pytest.raises(ConfigError) as error:
        custom(f"{module}:Missing")
    assert str(error.value) == (
        f"model m: module '{module}' has no attribute 'Missing' (implementation '{module}:Missing')"
    )
    broken = handler_module("raise RuntimeError('no GPU')\n")
    with pytest.raises(ConfigError, match=r"importing module .* failed: RuntimeError: no GPU"):
        custom(f"{broken}:M")


def test_an_implementation_must_look_like_module_colon_class() -> None:
    with pytest.raises(pydantic.ValidationError, match="implementation"):
        SPECS.validate_python({"runtime": "custom", "implementation": "pkg.models.M"})


def test_a_failing_implementation_is_a_model_error_naming_it(handler_module: Write) -> None:
    module = handler_module(CLASSES)
    model = custom(f"{module}:Failing", cut=1)
    with pytest.raises(ModelError) as info:
        model.predict({"x": np.zeros(2)})
    assert str(info.value) == (
        f"model m: predict() of implementation '{module}:Failing' raised "
        "RuntimeError: out of memory"
    )
