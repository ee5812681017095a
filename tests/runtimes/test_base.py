from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from streamdag.errors import ConfigError, InvalidInput, ModelError
from streamdag.runtimes import (
    DATATYPES,
    Model,
    ModelMetadata,
    TensorSpec,
    check_inputs,
    check_outputs,
    datatype_of,
)

from ._helpers import objects

META = ModelMetadata(
    name="clf",
    platform="test",
    inputs=[TensorSpec("x", "FP32", [-1, 3]), TensorSpec("text", "BYTES", [-1])],
    outputs=[TensorSpec("label", "INT64", [-1])],
)
UNDECLARED = ModelMetadata(name="fn", platform="python", inputs=[], outputs=[])


def good_inputs(rows: int = 2) -> dict[str, NDArray[Any]]:
    return {"x": np.zeros((rows, 3), np.float32), "text": objects(*[b"a"] * rows)}


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        (np.bool_, "BOOL"),
        (np.uint8, "UINT8"),
        (np.uint16, "UINT16"),
        (np.uint32, "UINT32"),
        (np.uint64, "UINT64"),
        (np.int8, "INT8"),
        (np.int16, "INT16"),
        (np.int32, "INT32"),
        (np.int64, "INT64"),
        (np.float16, "FP16"),
        (np.float32, "FP32"),
        (np.float64, "FP64"),
        (object, "BYTES"),
        (">f4", "FP32"),
    ],
)
def test_datatype_of_maps_numpy_dtypes(dtype: Any, datatype: str) -> None:
    assert datatype_of(np.dtype(dtype)) == datatype


@pytest.mark.parametrize("dtype", ["<U3", "S3", np.complex64, "datetime64[s]"])
def test_datatype_of_is_none_without_an_oip_datatype(dtype: Any) -> None:
    assert datatype_of(np.dtype(dtype)) is None


def test_datatypes_are_the_oip_ones() -> None:
    assert set(DATATYPES) == {
        *("BOOL", "BYTES", "FP16", "FP32", "FP64"),
        *(f"{sign}INT{bits}" for sign in ("", "U") for bits in (8, 16, 32, 64)),
    }


def test_tensor_spec_rejects_unknown_datatype() -> None:
    with pytest.raises(ConfigError, match=r"tensor 'x': unknown datatype 'FLOAT'"):
        TensorSpec("x", "FLOAT", [-1])


def test_check_inputs_returns_the_batch_size() -> None:
    assert check_inputs(META, good_inputs(rows=4)) == 4


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "model clf: no input tensors"),
        (
            {"x": np.zeros((2, 3), np.float32)},
            "model clf: missing input 'text'; it takes 'x', 'text'",
        ),
        (
            {**good_inputs(), "extra": np.zeros(2)},
            "model clf: unknown input 'extra'; it takes 'x', 'text'",
        ),
        (
            {**good_inputs(), "x": np.zeros((2, 3), np.float64)},
            "model clf: input 'x': expected datatype FP32, got FP64",
        ),
        (
            {**good_inputs(), "x": np.zeros((2, 4), np.float32)},
            r"model clf: input 'x': expected shape [-1, 3], got [2, 4]",
        ),
        (
            {**good_inputs(), "x": np.zeros((2, 3, 1), np.float32)},
            r"model clf: input 'x': expected shape [-1, 3], got [2, 3, 1]",
        ),
        (
            {**good_inputs(), "x": [[0.0, 0.0, 0.0]]},
            "model clf: input 'x': expected a numpy array, got list",
        ),
        (
            {**good_inputs(), "x": np.array(1.0, np.float32)},
            "model clf: input 'x': is a scalar; the first axis must be the batch",
        ),
        (
            {**good_inputs(), "text": objects(b"a", "b")},
            "model clf: input 'text': BYTES tensor holds a str, expected bytes",
        ),
        (
            {**good_inputs(), "text": np.array(["a", "b"])},
            "model clf: input 'text': numpy dtype <U1 has no OIP datatype "
            "(BYTES tensors are numpy object arrays of bytes)",
        ),
        (
            {**good_inputs(), "text": objects(b"a", b"b", b"c")},
            "model clf: input 'text' has 3 rows but input 'x' has 2; "
            "every input's first axis is the batch",
        ),
    ],
)
def test_check_inputs_names_the_tensor_and_the_problem(
    inputs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        check_inputs(META, inputs)
    assert str(info.value) == message


def test_undeclared_inputs_are_checked_only_for_the_batch() -> None:
    inputs = {"anything": np.zeros((3, 7), np.float64), "words": objects(b"a", b"b", b"c")}
    assert check_inputs(UNDECLARED, inputs) == 3
    with pytest.raises(InvalidInput, match="has 2 rows but input 'anything' has 3"):
        check_inputs(UNDECLARED, {**inputs, "words": objects(b"a", b"b")})


def test_empty_declared_shape_checks_only_the_batch() -> None:
    meta = ModelMetadata("m", "test", inputs=[TensorSpec("x", "FP32", [])], outputs=[])
    assert check_inputs(meta, {"x": np.zeros((2, 5, 6), np.float32)}) == 2


def test_check_outputs_accepts_declared_outputs() -> None:
    check_outputs(META, {"label": np.zeros(2, np.int64)}, rows=2)


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({}, "model clf: missing output 'label'; it declares 'label'"),
        (
            {"label": np.zeros(2, np.int64), "score": np.zeros(2)},
            "model clf: unexpected output 'score'; it declares 'label'",
        ),
        (
            {"label": np.zeros(2, np.int32)},
            "model clf: output 'label': expected datatype INT64, got INT32",
        ),
        ({"label": [1, 2]}, "model clf: output 'label': expected a numpy array, got list"),
        (
            {"label": np.zeros(3, np.int64)},
            "model clf: output 'label' has 3 rows, expected 2 (one per input row)",
        ),
    ],
)
def test_check_outputs_names_the_tensor_and_the_problem(
    outputs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelError) as info:
        check_outputs(META, outputs, rows=2)
    assert str(info.value) == message


def test_undeclared_outputs_are_checked_only_for_the_batch() -> None:
    check_outputs(UNDECLARED, {"y": np.zeros((2, 9))}, rows=2)
    with pytest.raises(ModelError, match="output 'y' has 1 rows, expected 2"):
        check_outputs(UNDECLARED, {"y": np.zeros(1)}, rows=2)


class Echo(Model):
    def load(self) -> None:
        pass

    def predict(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        return inputs


def test_model_needs_load_and_predict_only() -> None:
    model = Echo()
    model.load()
    model.unload()
    assert model.metadata() == ModelMetadata("Echo", "python", inputs=[], outputs=[])


def test_model_without_predict_cannot_be_created() -> None:
    class Incomplete(Model):
        def load(self) -> None:
            pass

    with pytest.raises(TypeError, match="predict"):
        Incomplete()  # type: ignore[abstract]
