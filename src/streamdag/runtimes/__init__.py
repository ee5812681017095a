"""Models and the runtimes that run them: the ``Model`` interface, ``python``, ``onnx``,
``sklearn``, ``oip`` (a remote OIP server), and ``create_model`` to pick one from a
declaration."""

from streamdag.runtimes.base import (
    DATATYPES,
    Model,
    ModelMetadata,
    TensorSpec,
    check_inputs,
    check_outputs,
    datatype_of,
)
from streamdag.runtimes.config import (
    BatchConfig,
    ModelSpec,
    OipModelSpec,
    OnnxModelSpec,
    PythonModelSpec,
    SklearnModelSpec,
    TensorDecl,
)
from streamdag.runtimes.oip import OipModel
from streamdag.runtimes.onnx import OnnxModel
from streamdag.runtimes.python import PythonModel
from streamdag.runtimes.registry import create_model
from streamdag.runtimes.sklearn import SklearnModel

__all__ = [
    "DATATYPES",
    "BatchConfig",
    "Model",
    "ModelMetadata",
    "ModelSpec",
    "OipModel",
    "OipModelSpec",
    "OnnxModel",
    "OnnxModelSpec",
    "PythonModel",
    "PythonModelSpec",
    "SklearnModel",
    "SklearnModelSpec",
    "TensorDecl",
    "TensorSpec",
    "check_inputs",
    "check_outputs",
    "create_model",
    "datatype_of",
]
