from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from streamdag.errors import ConfigError, InvalidInput, ModelError
from streamdag.runtimes import ModelMetadata, OnnxModel, OnnxModelSpec, TensorSpec

from ._helpers import objects

SPEC = OnnxModelSpec(runtime="onnx", uri="model.onnx")


def load(path: Path) -> OnnxModel:
    model = OnnxModel("clf", SPEC, path)
    model.load()
    return model


@pytest.fixture
def logistic_onnx(
    tmp_path: Path, logistic: LogisticRegression, features: tuple[np.ndarray, np.ndarray]
) -> Path:
    path = tmp_path / "logistic.onnx"
    converted = to_onnx(logistic, features[0][:1], options={"zipmap": False}, target_opset=17)
    path.write_bytes(converted.SerializeToString())
    return path


@pytest.fixture
def text_onnx(tmp_path: Path) -> Path:
    """Strings in and out: tagged = text + "!", same = (text == "!"), y = 2 * x."""
    graph = helper.make_graph(
        [
            helper.make_node("StringConcat", ["text", "bang"], ["tagged"]),
            helper.make_node("Equal", ["text", "bang"], ["same"]),
            helper.make_node("Mul", ["x", "two"], ["y"]),
        ],
        "text",
        [
            helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2]),
        ],
        [
            helper.make_tensor_value_info("tagged", TensorProto.STRING, ["batch"]),
            helper.make_tensor_value_info("same", TensorProto.BOOL, ["batch"]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2]),
        ],
        initializer=[
            helper.make_tensor("bang", TensorProto.STRING, [], [b"!"]),
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9)
    onnx.checker.check_model(model)
    path = tmp_path / "text.onnx"
    onnx.save(model, path)
    return path


def test_metadata_comes_from_the_file(logistic_onnx: Path) -> None:
    assert load(logistic_onnx).metadata() == ModelMetadata(
        name="clf",
        platform="onnxruntime_onnx",
        inputs=[TensorSpec("X", "FP32", [-1, 3])],
        outputs=[
            TensorSpec("label", "INT64", [-1]),
            TensorSpec("probabilities", "FP32", [-1, 2]),
        ],
    )


def test_predict_matches_the_estimator(
    logistic_onnx: Path, logistic: LogisticRegression, features: tuple[np.ndarray, np.ndarray]
) -> None:
    x = features[0][:7]
    outputs = load(logistic_onnx).predict({"X": x})
    np.testing.assert_array_equal(outputs["label"], logistic.predict(x))
    np.testing.assert_allclose(outputs["probabilities"], logistic.predict_proba(x), rtol=1e-5)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"X": np.zeros((2, 3))}, "model clf: input 'X': expected datatype FP32, got FP64"),
        (
            {"X": np.zeros((2, 4), np.float32)},
            "model clf: input 'X': expected shape [-1, 3], got [2, 4]",
        ),
        ({"x": np.zeros((2, 3), np.float32)}, "model clf: missing input 'X'; it takes 'X'"),
        (
            {"X": np.zeros((2, 3), np.float32), "Y": np.zeros(2)},
            "model clf: unknown input 'Y'; it takes 'X'",
        ),
    ],
)
def test_inputs_are_checked_before_running(
    logistic_onnx: Path, inputs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        load(logistic_onnx).predict(inputs)
    assert str(info.value) == message


def test_string_tensors_are_bytes_outside(text_onnx: Path) -> None:
    model = load(text_onnx)
    assert model.metadata().inputs == [
        TensorSpec("text", "BYTES", [-1]),
        TensorSpec("x", "FP32", [-1, 2]),
    ]
    assert [spec.datatype for spec in model.metadata().outputs] == ["BYTES", "BOOL", "FP32"]
    outputs = model.predict(
        {"text": objects(b"caf\xc3\xa9", b"!"), "x": np.ones((2, 2), np.float32)}
    )
    assert list(outputs["tagged"]) == ["café!".encode(), b"!!"]
    assert outputs["tagged"].dtype == object
    np.testing.assert_array_equal(outputs["same"], [False, True])
    np.testing.assert_array_equal(outputs["y"], np.full((2, 2), 2.0))


def test_undecodable_text_is_invalid_input(text_onnx: Path) -> None:
    with pytest.raises(
        InvalidInput, match="model clf: input 'text': BYTES element is not valid UTF-8"
    ):
        load(text_onnx).predict({"text": objects(b"\xff"), "x": np.ones((1, 2), np.float32)})


def test_unknown_rank_output_checks_only_the_batch(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Squeeze", ["x", "axes"], ["y"])],
        "squeeze",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 2]),
            helper.make_tensor_value_info("axes", TensorProto.INT64, [None]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    path = tmp_path / "squeeze.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path
    )
    model = load(path)
    assert model.metadata().outputs == [TensorSpec("y", "FP32", [])]
    outputs = model.predict({"x": np.ones((2, 1, 2), np.float32), "axes": np.array([1, 1])})
    assert outputs["y"].shape == (2, 2)


def test_runtime_failure_is_a_model_error(tmp_path: Path) -> None:
    # Reshape to a fixed size fails for any batch but the one it was written for.
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [1, 2])],
    )
    path = tmp_path / "reshape.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path
    )
    with pytest.raises(ModelError, match=r"model clf: onnxruntime failed: .*Reshape") as info:
        load(path).predict({"x": np.ones(3, np.float32)})
    assert info.value.__cause__ is not None


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.onnx")
    assert str(info.value) == f"model clf: ONNX file {tmp_path / 'absent.onnx'} not found"


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=re.escape(f"model clf: cannot load ONNX file {path}: ")):
        load(path)


def test_output_without_oip_datatype_is_a_config_error(
    tmp_path: Path, logistic: LogisticRegression, features: tuple[np.ndarray, np.ndarray]
) -> None:
    path = tmp_path / "zipmap.onnx"
    path.write_bytes(to_onnx(logistic, features[0][:1], target_opset=17).SerializeToString())
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == (
        "model clf: output 'output_probability' has ONNX type seq(map(int64,tensor(float))), "
        "which has no OIP datatype (convert skl2onnx classifiers with options={'zipmap': False})"
    )


def test_predict_before_load_is_refused(logistic_onnx: Path) -> None:
    with pytest.raises(ModelError, match="model clf is not loaded"):
        OnnxModel("clf", SPEC, logistic_onnx).predict({"X": np.zeros((1, 3), np.float32)})
