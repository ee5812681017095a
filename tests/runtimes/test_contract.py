"""The contract every runtime keeps, run against each registered one: built from a
declaration as a pipeline writes it, it loads, describes itself, answers 1 and N rows alike
(micro-batching never changes a row's result), refuses bad input with ``InvalidInput`` and
stays usable, and unloads. A runtime registered without a case here fails the suite.

The plug-in cases need the example package (examples/keywords_runtime), which ``make setup``
installs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
from numpy.typing import NDArray
from server_support import running_server
from serving.conftest import write_onnx
from serving.conftest import write_spec as write_serving_spec

from streamdag.errors import InvalidInput, ModelError, StreamdagError
from streamdag.runtimes import Model, ModelSpec, TensorSpec, create_model, runtime_names
from streamdag.serving import Server

from ._helpers import objects

Arrays = dict[str, NDArray[Any]]
SPECS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ModelSpec)

HANDLER = """
def scale(inputs, parameters):
    return {"y": inputs["x"] * parameters["factor"]}
"""
TEXTS = [b"chest pain and fever", b"no complaint", b"Smoker with a cough", b"fever, smoker"]


@dataclass(frozen=True)
class Case:
    """A runtime as a pipeline declares it, rows it takes, and input it must refuse."""

    declaration: dict[str, Any]
    rows: Callable[[int], Arrays]  # the first n rows; rows(1) is the first row of rows(n)
    bad: Arrays


def _floats(columns: int) -> Callable[[int], Arrays]:
    def rows(n: int) -> Arrays:
        return {"x": np.arange(n * columns, dtype=np.float32).reshape(n, columns) / 7}

    return rows


def _texts(n: int) -> Arrays:
    return {"text": objects(*(TEXTS[i % len(TEXTS)] for i in range(n)))}


def _python(folder: Path, request: pytest.FixtureRequest) -> Case:
    (folder / "contract_handlers.py").write_text(HANDLER)
    declaration = {
        "runtime": "python",
        "handler": "contract_handlers:scale",
        "parameters": {"factor": 3},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    }
    return Case(declaration, _floats(2), {"x": np.zeros((2, 2), dtype=np.int64)})


def _onnx(folder: Path, request: pytest.FixtureRequest) -> Case:
    write_onnx(folder / "add_one.onnx")
    declaration = {"runtime": "onnx", "uri": "add_one.onnx"}
    return Case(declaration, _floats(2), {"x": np.zeros((2, 3), dtype=np.float32)})


def _sklearn(folder: Path, request: pytest.FixtureRequest) -> Case:
    request.getfixturevalue("logistic_file").rename(folder / "clf.joblib")
    declaration = {
        "runtime": "sklearn",
        "uri": "clf.joblib",
        "input": "x",
        "outputs": ["predict_proba"],
    }
    return Case(declaration, _floats(3), {"x": np.zeros((2, 4))})


def _oip(folder: Path, request: pytest.FixtureRequest) -> Case:
    server: Server = request.getfixturevalue("remote_server")
    declaration = {"runtime": "oip", "url": f"127.0.0.1:{server.grpc_port}", "model": "scale"}
    return Case(declaration, _floats(3), {"x": np.zeros((2, 4), dtype=np.float32)})


def _keywords(folder: Path, request: pytest.FixtureRequest) -> Case:
    declaration = {"runtime": "keywords", "keywords": ["pain", "fever", "smoker"]}
    return Case(declaration, _texts, {"text": np.zeros(2, dtype=np.float32)})


def _custom(folder: Path, request: pytest.FixtureRequest) -> Case:
    declaration = {
        "runtime": "custom",
        "implementation": "streamdag_keywords:KeywordModel",
        "parameters": {"keywords": ["cough", "smoker"], "case_sensitive": True},
    }
    return Case(declaration, _texts, {"words": _texts(2)["text"]})


CASES: dict[str, Callable[[Path, pytest.FixtureRequest], Case]] = {
    "python": _python,
    "onnx": _onnx,
    "sklearn": _sklearn,
    "oip": _oip,
    "custom": _custom,
    "keywords": _keywords,  # the example plug-in, found through its entry point
}


@pytest.fixture(scope="module")
def remote_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``streamdag serve`` for the ``oip`` runtime to call."""
    spec, _ = write_serving_spec(tmp_path_factory.mktemp("remote"))
    with running_server([spec]) as server:
        yield server


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    return CASES[request.param](tmp_path, request)


@pytest.fixture
def model(case: Case, tmp_path: Path) -> Iterator[Model]:
    """The case's runtime, loaded, built as a pipeline's worker builds it."""
    built = create_model("contract", SPECS.validate_python(case.declaration), tmp_path)
    built.load()
    yield built
    built.unload()


def test_every_registered_runtime_is_under_contract() -> None:
    assert sorted(runtime_names()) == sorted(CASES)


def test_metadata_describes_the_loaded_model(model: Model) -> None:
    meta = model.metadata()
    assert meta.name == "contract"
    assert meta.platform
    assert meta.inputs
    assert meta.outputs
    assert all(isinstance(spec, TensorSpec) for spec in [*meta.inputs, *meta.outputs])


def test_one_row_and_many_rows_answer_alike(model: Model, case: Case) -> None:
    one = model.predict(case.rows(1))
    many = model.predict(case.rows(5))
    declared = {spec.name for spec in model.metadata().outputs}
    assert set(one) == set(many) == declared
    for name in declared:
        assert one[name].shape[0] == 1
        assert many[name].shape[0] == 5
        np.testing.assert_allclose(many[name][:1], one[name], rtol=1e-6)


def test_bad_input_is_refused_and_the_model_goes_on(model: Model, case: Case) -> None:
    with pytest.raises(InvalidInput):
        model.predict(case.bad)
    assert model.predict(case.rows(2))


def test_unload_releases_the_model_and_load_brings_it_back(model: Model, case: Case) -> None:
    model.unload()
    with pytest.raises(ModelError):
        model.metadata()
    with pytest.raises(StreamdagError):
        model.predict(case.rows(1))
    model.load()
    assert model.predict(case.rows(1))
