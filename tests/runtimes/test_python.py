from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydantic
import pytest

from streamdag.errors import ConfigError, InvalidInput, ModelError
from streamdag.pipeline import load_spec
from streamdag.runtimes import (
    ModelMetadata,
    PythonModel,
    PythonModelSpec,
    TensorSpec,
    create_model,
)

Write = Callable[[str], str]
Make = Callable[[str], PythonModel]

FUNCTIONS = """
import numpy as np

def double(inputs):
    return {"y": inputs["x"] * 2, "n": np.full(len(inputs["x"]), len(inputs))}

def boom(inputs):
    raise ValueError("bad row")

def refuse(inputs):
    from streamdag.errors import InvalidInput
    raise InvalidInput("text too long")

def as_list(inputs):
    return [inputs["x"]]

def with_list(inputs):
    return {"y": [1, 2]}

def one_row(inputs):
    return {"y": inputs["x"][:1]}

NOT_CALLABLE = 42
"""

CLASSES = """
import numpy as np
from streamdag.runtimes import Model, ModelMetadata, TensorSpec

class Plain(Model):
    events = []

    def load(self):
        self.events.append("load")
        self.offset = 10

    def predict(self, inputs):
        return {"y": inputs["x"] + self.offset}

    def unload(self):
        self.events.append("unload")


class Configured(Model):
    def __init__(self, spec):
        self.spec = spec

    def load(self):
        pass

    def predict(self, inputs):
        return {"handler": np.array([self.spec.handler.encode()] * len(inputs["x"]), dtype=object)}


class Declared(Model):
    def load(self):
        pass

    def predict(self, inputs):
        return {"y": inputs["x"].astype(np.float64)}

    def metadata(self):
        return ModelMetadata(
            name="ignored",
            platform="custom",
            inputs=[TensorSpec("x", "FP32", [-1, 2])],
            outputs=[TensorSpec("y", "FP32", [-1, 2])],
        )


class BrokenLoad(Model):
    def load(self):
        raise OSError("weights.bin missing")

    def predict(self, inputs):
        return inputs


class TooManyArgs(Model):
    def __init__(self, spec, other):
        pass

    def load(self):
        pass

    def predict(self, inputs):
        return inputs


class NotAModel:
    pass
"""


@pytest.fixture
def functions(handler_module: Write) -> str:
    return handler_module(FUNCTIONS)


@pytest.fixture
def classes(handler_module: Write) -> str:
    return handler_module(CLASSES)


def test_function_handler_keeps_the_batch(functions: str, python_model: Make) -> None:
    model = python_model(f"{functions}:double")
    outputs = model.predict({"x": np.arange(5.0), "z": np.zeros((5, 2))})
    np.testing.assert_array_equal(outputs["y"], np.arange(5.0) * 2)
    np.testing.assert_array_equal(outputs["n"], [2] * 5)
    assert model.metadata() == ModelMetadata("m", "python", inputs=[], outputs=[])


def test_function_handler_inputs_must_share_the_batch(functions: str, python_model: Make) -> None:
    model = python_model(f"{functions}:double")
    with pytest.raises(InvalidInput, match="input 'z' has 4 rows but input 'x' has 5"):
        model.predict({"x": np.arange(5.0), "z": np.zeros(4)})


def test_class_handler_is_loaded_run_and_unloaded(classes: str, python_model: Make) -> None:
    model = python_model(f"{classes}:Plain")
    outputs = model.predict({"x": np.arange(3)})
    np.testing.assert_array_equal(outputs["y"], [10, 11, 12])
    model.unload()
    module = __import__(classes)
    assert module.Plain.events == ["load", "unload"]
    with pytest.raises(ModelError, match="model m is not loaded"):
        model.predict({"x": np.arange(3)})


def test_class_handler_taking_one_argument_gets_the_spec(classes: str, python_model: Make) -> None:
    outputs = python_model(f"{classes}:Configured").predict({"x": np.zeros(2)})
    assert list(outputs["handler"]) == [f"{classes}:Configured".encode()] * 2


def test_class_handler_metadata_is_checked_and_renamed(classes: str, python_model: Make) -> None:
    model = python_model(f"{classes}:Declared")
    meta = model.metadata()
    assert meta.name == "m"
    assert meta.platform == "custom"
    assert meta.inputs == [TensorSpec("x", "FP32", [-1, 2])]
    with pytest.raises(
        InvalidInput, match=r"model m: input 'x': expected shape \[-1, 2\], got \[3, 5\]"
    ):
        model.predict({"x": np.zeros((3, 5), np.float32)})
    with pytest.raises(ModelError, match="model m: output 'y': expected datatype FP32, got FP64"):
        model.predict({"x": np.zeros((3, 2), np.float32)})


def test_handler_error_becomes_model_error(functions: str, python_model: Make) -> None:
    model = python_model(f"{functions}:boom")
    with pytest.raises(ModelError) as info:
        model.predict({"x": np.zeros(1)})
    assert str(info.value) == (
        f"model m: the function of handler '{functions}:boom' raised ValueError: bad row"
    )
    assert isinstance(info.value.__cause__, ValueError)


def test_handler_may_refuse_input(functions: str, python_model: Make) -> None:
    with pytest.raises(InvalidInput, match="text too long"):
        python_model(f"{functions}:refuse").predict({"x": np.zeros(1)})


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("as_list", "returned list, expected dict[str, numpy.ndarray]"),
        ("with_list", "returned list for key 'y', expected dict[str, numpy.ndarray]"),
        ("one_row", "output 'y' has 1 rows, expected 3 (one per input row)"),
    ],
)
def test_handler_results_must_be_a_dict_of_batch_arrays(
    functions: str, python_model: Make, attr: str, message: str
) -> None:
    with pytest.raises(ModelError, match=re.escape(message)) as info:
        python_model(f"{functions}:{attr}").predict({"x": np.zeros(3)})
    assert str(info.value).startswith("model m: ")


def test_handler_load_failure_names_the_model(classes: str, python_model: Make) -> None:
    with pytest.raises(ModelError) as info:
        python_model(f"{classes}:BrokenLoad")
    assert str(info.value) == (
        f"model m: load() of handler '{classes}:BrokenLoad' raised OSError: weights.bin missing"
    )


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("missing", "model m: module '{module}' has no attribute 'missing' (handler '{handler}')"),
        ("NOT_CALLABLE", "model m: handler '{handler}' is a int, not a function or a Model class"),
        (
            "NotAModel",
            "model m: handler '{handler}' is a class but not a subclass of "
            "streamdag.runtimes.Model",
        ),
        (
            "TooManyArgs",
            "model m: handler class '{handler}' must take no arguments or one (the model spec)",
        ),
    ],
)
def test_unusable_handler_is_a_config_error(
    classes: str, handler_module: Write, python_model: Make, attr: str, message: str
) -> None:
    module = classes if attr != "NOT_CALLABLE" else handler_module(FUNCTIONS)
    handler = f"{module}:{attr}"
    with pytest.raises(ConfigError) as info:
        python_model(handler)
    assert str(info.value) == message.format(module=module, handler=handler)


def test_missing_module_is_a_config_error(python_model: Make) -> None:
    with pytest.raises(ConfigError) as info:
        python_model("no_such_pkg.handlers:run")
    assert str(info.value) == (
        "model m: cannot import module 'no_such_pkg.handlers' of handler "
        "'no_such_pkg.handlers:run': no module named 'no_such_pkg'"
    )


def test_module_failing_to_import_is_a_config_error(
    handler_module: Write, python_model: Make
) -> None:
    missing_dependency = handler_module("import no_such_dependency\n")
    with pytest.raises(ConfigError) as info:
        python_model(f"{missing_dependency}:run")
    assert str(info.value) == (
        f"model m: importing module '{missing_dependency}' of handler "
        f"'{missing_dependency}:run' failed: ModuleNotFoundError: "
        "No module named 'no_such_dependency'"
    )
    raising = handler_module("raise RuntimeError('no GPU')\n")
    with pytest.raises(ConfigError, match="failed: RuntimeError: no GPU"):
        python_model(f"{raising}:run")


def test_handler_string_must_be_module_colon_attr() -> None:
    with pytest.raises(pydantic.ValidationError, match="handler"):
        PythonModelSpec(runtime="python", handler="mypkg.handlers.run")
    # A spec built without validation still gets a clear message at load.
    spec = PythonModelSpec.model_construct(runtime="python", handler="mypkg.handlers.run")
    with pytest.raises(ConfigError) as info:
        PythonModel("m", spec).load()
    assert str(info.value) == ("model m: handler 'mypkg.handlers.run' must look like 'module:attr'")


def test_search_path_makes_modules_beside_the_spec_importable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "beside_spec_handlers.py").write_text(
        "def run(inputs):\n    return {'y': inputs['x'] + 1}\n"
    )
    spec = PythonModelSpec(runtime="python", handler="beside_spec_handlers:run")
    model = PythonModel("m", spec, search_path=tmp_path)
    model.load()
    np.testing.assert_array_equal(model.predict({"x": np.arange(2)})["y"], [1, 2])


def _declared(handler: str, inputs: list[dict[str, object]]) -> PythonModel:
    model = PythonModel("m", PythonModelSpec(runtime="python", handler=handler, inputs=inputs))
    model.load()
    return model


def test_inputs_declared_in_the_spec_are_checked_and_shown(functions: str) -> None:
    model = _declared(
        f"{functions}:double",
        [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}, {"name": "z", "datatype": "BYTES"}],
    )
    assert model.metadata().inputs == [
        TensorSpec("x", "FP32", [-1, 2]),
        TensorSpec("z", "BYTES", []),
    ]
    z = np.array([b"a", b"b"], dtype=object)
    outputs = model.predict({"x": np.ones((2, 2), np.float32), "z": z})
    np.testing.assert_array_equal(outputs["y"], np.full((2, 2), 2, np.float32))
    with pytest.raises(InvalidInput, match="model m: missing input 'z'; it takes 'x', 'z'"):
        model.predict({"x": np.ones((2, 2), np.float32)})
    with pytest.raises(InvalidInput, match="model m: unknown input 'w'; it takes 'x', 'z'"):
        model.predict({"x": np.ones((2, 2), np.float32), "z": z, "w": z})
    with pytest.raises(InvalidInput, match="input 'x': expected datatype FP32, got INT64"):
        model.predict({"x": np.ones((2, 2), np.int64), "z": z})
    with pytest.raises(InvalidInput, match=r"input 'x': expected shape \[-1, 2\], got \[2, 3\]"):
        model.predict({"x": np.ones((2, 3), np.float32), "z": z})


def test_inputs_declared_in_the_spec_take_the_place_of_a_class_own(classes: str) -> None:
    model = _declared(f"{classes}:Declared", [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}])
    assert model.metadata().inputs == [TensorSpec("x", "FP32", [-1, 3])]
    assert model.metadata().outputs == [TensorSpec("y", "FP32", [-1, 2])]  # its own, still
    with pytest.raises(InvalidInput, match=r"expected shape \[-1, 3\], got \[1, 2\]"):
        model.predict({"x": np.zeros((1, 2), np.float32)})


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([{"name": "x", "datatype": "FLOAT32"}], "unknown datatype 'FLOAT32'; expected one of"),
        ([{"name": "x"}], r"inputs\.0\.datatype\s+Field required"),
        ([{"name": "x", "datatype": "FP32", "shape": [-1, 0]}], "dimension 0: each is -1"),
        (
            [{"name": "x", "datatype": "FP32"}, {"name": "x", "datatype": "INT64"}],
            "input 'x' is declared more than once",
        ),
        ([], "declare at least one input, or leave inputs out"),
        ([{"name": "x", "datatype": "FP32", "dims": [2]}], r"inputs\.0\.dims"),
    ],
)
def test_bad_input_declarations_are_refused_naming_the_field(
    inputs: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        PythonModelSpec(runtime="python", handler="m:run", inputs=inputs)


def test_outputs_declared_with_datatypes_are_shown_and_checked(functions: str) -> None:
    spec = PythonModelSpec(
        runtime="python",
        handler=f"{functions}:double",
        outputs=[
            {"name": "y", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "n", "datatype": "INT64"},
        ],
    )
    assert spec.output_names == ["y", "n"]
    model = PythonModel("m", spec)
    model.load()
    assert model.metadata().outputs == [
        TensorSpec("y", "FP32", [-1, 2]),
        TensorSpec("n", "INT64", []),
    ]
    outputs = model.predict({"x": np.ones((3, 2), np.float32)})
    assert outputs["y"].dtype == np.float32
    with pytest.raises(ModelError, match="model m: output 'y': expected datatype FP32, got FP64"):
        model.predict({"x": np.ones((3, 2), np.float64)})


def test_outputs_named_only_are_not_checked_and_cannot_be_mixed(functions: str) -> None:
    named = PythonModelSpec(runtime="python", handler=f"{functions}:double", outputs=["y", "n"])
    assert named.output_names == ["y", "n"]
    model = PythonModel("m", named)
    model.load()
    assert model.metadata().outputs == []
    with pytest.raises(pydantic.ValidationError, match="not a mix"):
        PythonModelSpec(
            runtime="python",
            handler="m:run",
            outputs=["y", {"name": "n", "datatype": "INT64"}],
        )


WITH_PARAMETERS = """
import numpy as np
from streamdag.runtimes import Model

def flag(inputs, parameters):
    return {"urgent": inputs["score"] >= parameters["threshold"]}

def plain(inputs):
    return {"y": inputs["x"]}

class Scaler(Model):
    def __init__(self, spec):
        self.factor = spec.parameters["factor"]

    def load(self):
        pass

    def predict(self, inputs):
        return {"y": inputs["x"] * self.factor}

class NoArguments(Scaler):
    def __init__(self):
        self.factor = 1
"""

PARAMETERS_PIPELINE = """
name: params
models:
  triage:
    runtime: python
    handler: "MODULE:flag"
    parameters: {threshold: 0.8}
  scale:
    runtime: python
    handler: "MODULE:Scaler"
    parameters: {factor: 10}
steps:
  - {name: triage, model: triage}
  - {name: scale, model: scale}
"""


def test_yaml_parameters_reach_python_handlers(handler_module: Write, tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(PARAMETERS_PIPELINE.replace("MODULE", handler_module(WITH_PARAMETERS)))
    spec = load_spec(path)
    triage = create_model("triage", spec.models["triage"], spec.base_dir)
    triage.load()
    urgent = triage.predict({"score": np.array([0.5, 0.8, 0.95])})["urgent"]
    assert urgent.tolist() == [False, True, True]
    scale = create_model("scale", spec.models["scale"], spec.base_dir)
    scale.load()
    assert scale.predict({"x": np.array([1, 2])})["y"].tolist() == [10, 20]


@pytest.mark.parametrize(
    ("attr", "fault"),
    [
        (
            "plain",
            "handler '{h}' takes no `parameters` argument, so it cannot receive parameters: factor",
        ),
        (
            "NoArguments",
            "handler class '{h}' takes no arguments, so it cannot receive "
            "parameters; let its __init__ take the model spec and read spec.parameters",
        ),
    ],
)
def test_parameters_a_handler_cannot_take_are_a_config_error(
    handler_module: Write, attr: str, fault: str
) -> None:
    handler = f"{handler_module(WITH_PARAMETERS)}:{attr}"
    spec = PythonModelSpec(runtime="python", handler=handler, parameters={"factor": 2})
    with pytest.raises(ConfigError) as info:
        PythonModel("m", spec).load()
    assert str(info.value) == "model m: " + fault.format(h=handler)
