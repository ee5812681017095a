"""Models and the runtimes that run them: the ``Model`` interface, the built-in runtimes
``python``, ``onnx``, ``sklearn``, ``oip`` (a remote OIP server) and ``custom`` (a class of
your own), the registry that finds a runtime by name (plug-ins included), and
``create_model`` to build one from a declaration. docs/runtimes.md shows how to write one.

The runtimes' classes are imported on first use (``streamdag.runtimes.OnnxModel``), so a
process imports only the runtimes its pipelines name.
"""

import importlib
from typing import TYPE_CHECKING, Any

from streamdag.runtimes.base import (
    DATATYPES,
    Model,
    ModelMetadata,
    TensorSpec,
    check_inputs,
    check_outputs,
    datatype_of,
)
from streamdag.runtimes.config import BatchConfig, RuntimeSpec, TensorDecl, resolve_uri
from streamdag.runtimes.registry import (
    _BUILTIN,
    ENTRY_POINT_GROUP,
    ModelSpec,
    create_model,
    get_runtime,
    register_runtime,
    runtime_names,
)

if TYPE_CHECKING:
    from streamdag.runtimes.custom import CustomModel, CustomModelSpec
    from streamdag.runtimes.oip import OipModel, OipModelSpec
    from streamdag.runtimes.onnx import OnnxModel, OnnxModelSpec
    from streamdag.runtimes.python import PythonModel, PythonModelSpec
    from streamdag.runtimes.sklearn import SklearnModel, SklearnModelSpec

# The built-in runtimes' classes and their spec classes, by attribute name -> the module
# that defines them, as the registry names them.
_LAZY = {
    name: module
    for module, cls in (target.split(":") for target in _BUILTIN.values())
    for name in (cls, f"{cls}Spec")
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DATATYPES",
    "ENTRY_POINT_GROUP",
    "BatchConfig",
    "CustomModel",
    "CustomModelSpec",
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
