from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline

from streamdag.errors import ConfigError, InvalidInput, ModelError
from streamdag.runtimes import ModelMetadata, SklearnModel, SklearnModelSpec, TensorSpec

from ._helpers import LABELS, TEXTS, objects


def load(path: Path, **spec: Any) -> SklearnModel:
    model = SklearnModel("clf", SklearnModelSpec(runtime="sklearn", uri=str(path), **spec), path)
    model.load()
    return model


def test_numeric_metadata(logistic_file: Path) -> None:
    model = load(logistic_file, input="features", outputs=["predict", "predict_proba"])
    assert model.metadata() == ModelMetadata(
        name="clf",
        platform="sklearn",
        inputs=[TensorSpec("features", "FP64", [-1, 3])],
        outputs=[
            TensorSpec("predict", "INT64", [-1]),
            TensorSpec("predict_proba", "FP64", [-1, 2]),
        ],
    )


def test_numeric_predict_matches_the_estimator(
    logistic_file: Path, logistic: LogisticRegression, features: tuple[np.ndarray, np.ndarray]
) -> None:
    model = load(logistic_file, outputs=["predict", "predict_proba", "decision_function"])
    x = features[0][:6].astype(np.float64)
    outputs = model.predict({"input": x})
    np.testing.assert_array_equal(outputs["predict"], logistic.predict(x))
    np.testing.assert_allclose(outputs["predict_proba"], logistic.predict_proba(x))
    np.testing.assert_allclose(outputs["decision_function"], logistic.decision_function(x))
    assert outputs["decision_function"].shape == (6,)


def test_any_numeric_input_is_taken_as_fp64(logistic_file: Path) -> None:
    outputs = load(logistic_file).predict({"input": np.array([[3, 0, 0], [-3, 0, 0]], np.int32)})
    np.testing.assert_array_equal(outputs["predict"], [1, 0])


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"input": np.zeros((2, 4))},
            "model clf: input 'input': expected shape [-1, 3], got [2, 4]",
        ),
        ({"input": objects(b"a")}, "model clf: input 'input': expected datatype FP64, got BYTES"),
        ({"x": np.zeros((2, 3))}, "model clf: missing input 'input'; it takes 'input'"),
    ],
)
def test_numeric_inputs_are_checked(
    logistic_file: Path, inputs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        load(logistic_file).predict(inputs)
    assert str(info.value) == message


def test_text_pipeline_takes_and_gives_bytes(text_file: Path) -> None:
    model = load(text_file, input="text", outputs=["predict", "predict_proba"])
    assert model.metadata().inputs == [TensorSpec("text", "BYTES", [-1])]
    assert model.metadata().outputs == [
        TensorSpec("predict", "BYTES", [-1]),
        TensorSpec("predict_proba", "FP64", [-1, 2]),
    ]
    outputs = model.predict({"text": objects(*TEXTS)})
    assert list(outputs["predict"]) == [label.encode() for label in LABELS]
    assert outputs["predict_proba"].shape == (len(TEXTS), 2)


def test_text_column_is_taken_as_rows(text_file: Path) -> None:
    column = objects(b"chest pain", b"wrist fracture").reshape(2, 1)
    outputs = load(text_file, input="text").predict({"text": column})
    assert list(outputs["predict"]) == [b"cardiac", b"trauma"]


def test_undecodable_text_is_invalid_input(text_file: Path) -> None:
    with pytest.raises(InvalidInput, match="input 'text': BYTES element is not valid UTF-8"):
        load(text_file, input="text").predict({"text": objects(b"\xffpain")})


def test_sparse_transform_comes_back_dense(tmp_path: Path) -> None:
    path = tmp_path / "tfidf.joblib"
    joblib.dump(TfidfVectorizer().fit([text.decode() for text in TEXTS]), path)
    model = load(path, outputs=["transform"])
    assert model.metadata().outputs == [TensorSpec("transform", "FP64", [-1, -1])]
    result = model.predict({"input": objects(b"chest pain", b"fall")})["transform"]
    assert isinstance(result, np.ndarray)
    assert result.shape[0] == 2
    assert result.dtype == np.float64


def test_regressor_predicts_fp64(tmp_path: Path, features: tuple[np.ndarray, np.ndarray]) -> None:
    path = tmp_path / "linear.joblib"
    x, _ = features
    joblib.dump(LinearRegression().fit(x, x[:, 0] * 2), path)
    model = load(path)
    assert model.metadata().outputs == [TensorSpec("predict", "FP64", [-1])]
    np.testing.assert_allclose(model.predict({"input": x[:2]})["predict"], x[:2, 0] * 2, rtol=1e-5)


def test_missing_method_is_a_config_error(
    tmp_path: Path, features: tuple[np.ndarray, np.ndarray]
) -> None:
    path = tmp_path / "linear.joblib"
    joblib.dump(LinearRegression().fit(features[0], features[0][:, 0]), path)
    with pytest.raises(ConfigError) as info:
        load(path, outputs=["predict", "predict_proba"])
    assert str(info.value) == (
        "model clf: estimator LinearRegression has no method 'predict_proba' (listed in outputs)"
    )


def test_pipeline_lacking_the_method_in_its_last_step_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "pipe.joblib"
    pipeline = Pipeline([("tfidf", TfidfVectorizer()), ("reg", LinearRegression())])
    joblib.dump(pipeline.fit([t.decode() for t in TEXTS], np.arange(len(TEXTS), dtype=float)), path)
    with pytest.raises(ConfigError, match="estimator Pipeline has no method 'predict_proba'"):
        load(path, outputs=["predict_proba"])


def test_estimator_failure_is_a_model_error(logistic_file: Path) -> None:
    with pytest.raises(ModelError, match=r"model clf: predict failed: ValueError: .*NaN") as info:
        load(logistic_file).predict({"input": np.full((1, 3), np.nan)})
    assert isinstance(info.value.__cause__, ValueError)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.joblib")
    assert str(info.value) == (
        f"model clf: scikit-learn file {tmp_path / 'absent.joblib'} not found"
    )


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.joblib"
    path.write_bytes(b"not a pickle")
    with pytest.raises(
        ConfigError, match=re.escape(f"model clf: cannot load scikit-learn file {path}: ")
    ):
        load(path)
