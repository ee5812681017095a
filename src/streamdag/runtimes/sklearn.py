"""Runtime ``sklearn``: a joblib file holding a fitted scikit-learn estimator or pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from streamdag.errors import ConfigError, ModelError
from streamdag.extras import require
from streamdag.runtimes._text import decode_utf8, encode_utf8
from streamdag.runtimes.base import (
    Model,
    ModelMetadata,
    TensorSpec,
    check_inputs,
    check_outputs,
    datatype_of,
)
from streamdag.runtimes.config import RuntimeSpec, resolve_uri

__all__ = ["SklearnModel", "SklearnModelSpec"]


SklearnMethod = Literal["predict", "predict_proba", "decision_function", "transform"]


def _default_sklearn_outputs() -> list[SklearnMethod]:
    return ["predict"]


class SklearnModelSpec(RuntimeSpec):
    """A joblib-pickled scikit-learn estimator; one input tensor, named outputs."""

    runtime: Literal["sklearn"]
    uri: str
    input: str = "input"
    outputs: list[SklearnMethod] = Field(default_factory=_default_sklearn_outputs, min_length=1)

    @property
    def output_names(self) -> list[str] | None:
        return list(self.outputs)


class SklearnModel(Model):
    """Runs ``spec.outputs`` (``predict``, ``predict_proba``...) on one input tensor.

    An estimator that knows its ``n_features_in_`` takes an FP64 matrix ``[-1, n]``; any
    numeric input is converted to float64 first, as scikit-learn would. One that does not
    (a pipeline starting with a text vectorizer) takes BYTES rows, decoded to ``str``; a
    ``[n, 1]`` column of text is accepted as ``[n]``. Each output is a tensor named after
    its method; text labels come back as BYTES, floats as FP64, sparse results dense.
    """

    spec_class = SklearnModelSpec

    def __init__(self, name: str, spec: SklearnModelSpec, path: Path) -> None:
        self.name = name
        self.spec = spec
        self.path = path
        self._estimator: Any = None
        self._metadata: ModelMetadata | None = None

    @classmethod
    def from_spec(cls, name: str, spec: RuntimeSpec, base_dir: Path) -> SklearnModel:
        sklearn = cast(SklearnModelSpec, spec)
        return cls(name, sklearn, resolve_uri(sklearn.uri, base_dir))

    def load(self) -> None:
        if not self.path.is_file():
            raise ConfigError(f"model {self.name}: scikit-learn file {self.path} not found")
        # Imported here so that importing streamdag (the CLI, a server of other runtimes)
        # does not pay for it, and a core install without the extra runs other runtimes.
        # joblib comes with scikit-learn, which unpickling the estimator needs anyway.
        require("sklearn", extra="sklearn", what=f"model {self.name} (runtime sklearn)")
        joblib = require("joblib", extra="sklearn", what=f"model {self.name} (runtime sklearn)")

        try:
            estimator = joblib.load(self.path)
        except Exception as exc:  # unpickling can raise nearly anything
            raise ConfigError(
                f"model {self.name}: cannot load scikit-learn file {self.path}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        for method in self.spec.outputs:
            # Asked of the instance: a pipeline has predict_proba only if its last step has.
            if not callable(getattr(estimator, method, None)):
                raise ConfigError(
                    f"model {self.name}: estimator {type(estimator).__name__} has no method "
                    f"{method!r} (listed in outputs)"
                )
        self._metadata = ModelMetadata(
            name=self.name,
            platform="sklearn",
            inputs=[_input_spec(self.spec.input, estimator)],
            outputs=[_output_spec(method, estimator) for method in self.spec.outputs],
        )
        self._estimator = estimator

    def predict(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        meta = self.metadata()
        inputs = {name: self._conform(meta, name, array) for name, array in inputs.items()}
        rows = check_inputs(meta, inputs)
        features = inputs[self.spec.input]
        if meta.inputs[0].datatype == "BYTES":
            features = decode_utf8(f"model {self.name}", self.spec.input, features)
        outputs: dict[str, NDArray[Any]] = {}
        for spec in meta.outputs:
            try:
                result = getattr(self._estimator, spec.name)(features)
            except Exception as exc:
                raise ModelError(
                    f"model {self.name}: {spec.name} failed: {type(exc).__name__}: {exc}"
                ) from exc
            outputs[spec.name] = _as_tensor(result, spec.datatype)
        check_outputs(meta, outputs, rows)
        return outputs

    def unload(self) -> None:
        self._estimator = None
        self._metadata = None

    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            raise ModelError(f"model {self.name} is not loaded; call load() first")
        return self._metadata

    def _conform(self, meta: ModelMetadata, name: str, array: object) -> Any:
        """Bring an input to what the model declares when it is only a formality away."""
        if name != self.spec.input or not isinstance(array, np.ndarray):
            return array  # check_inputs reports it
        if meta.inputs[0].datatype == "FP64" and array.dtype.kind in "biuf":
            return array.astype(np.float64, copy=False)
        if meta.inputs[0].datatype == "BYTES" and array.ndim == 2 and array.shape[1] == 1:
            return array.reshape(-1)
        return array


def _final_step(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def _input_spec(name: str, estimator: Any) -> TensorSpec:
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        return TensorSpec(name=name, datatype="BYTES", shape=[-1])
    return TensorSpec(name=name, datatype="FP64", shape=[-1, int(n_features)])


def _output_spec(method: str, estimator: Any) -> TensorSpec:
    final = _final_step(estimator)
    classes = getattr(final, "classes_", None)
    if method == "predict":
        if isinstance(classes, list):  # multi-output classifier: one label per output
            return TensorSpec(method, _label_datatype(classes[0]), [-1, len(classes)])
        if classes is not None:
            return TensorSpec(method, _label_datatype(classes), [-1])
        return TensorSpec(method, "FP64", [-1, -1] if _multi_output(final) else [-1])
    if method == "predict_proba" and classes is not None and not isinstance(classes, list):
        return TensorSpec(method, "FP64", [-1, len(classes)])
    if method == "decision_function" and classes is not None and not isinstance(classes, list):
        # Binary classifiers give one score per row, the others one per class.
        return TensorSpec(method, "FP64", [-1] if len(classes) == 2 else [-1, len(classes)])
    return TensorSpec(method, "FP64", [-1, -1])


def _label_datatype(classes: Any) -> str:
    dtype = np.asarray(classes).dtype
    if dtype.kind in "USO":
        return "BYTES"
    if dtype.kind == "f":
        return "FP64"
    return datatype_of(dtype) or "BYTES"


def _multi_output(regressor: Any) -> bool:
    if getattr(regressor, "n_outputs_", 1) > 1:
        return True
    coef = getattr(regressor, "coef_", None)
    # Linear models fitted on a 2-D target keep a 2-D coef_ and predict 2-D, even for one column.
    return coef is not None and np.ndim(coef) == 2


def _as_tensor(result: Any, datatype: str) -> NDArray[Any]:
    if hasattr(result, "toarray"):  # scipy sparse, e.g. from a vectorizer's transform
        result = result.toarray()
    array = np.asarray(result)
    if datatype == "FP64" and array.dtype.kind in "biuf":
        return array.astype(np.float64, copy=False)
    if datatype == "BYTES":
        return encode_utf8(array)
    return array
