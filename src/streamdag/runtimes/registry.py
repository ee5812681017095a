"""Picks the runtime for a model declaration."""

from __future__ import annotations

from pathlib import Path

from streamdag.errors import ConfigError
from streamdag.runtimes.base import Model
from streamdag.runtimes.config import (
    ModelSpec,
    OipModelSpec,
    OnnxModelSpec,
    PythonModelSpec,
    SklearnModelSpec,
)
from streamdag.runtimes.oip import OipModel
from streamdag.runtimes.onnx import OnnxModel
from streamdag.runtimes.python import PythonModel
from streamdag.runtimes.sklearn import SklearnModel

__all__ = ["create_model"]


def create_model(name: str, spec: ModelSpec, base_dir: Path) -> Model:
    """The runtime for ``spec``, not loaded yet; call ``load()`` in the process that predicts.

    ``base_dir`` is the pipeline file's folder: relative ``uri`` are resolved against it
    and python handler modules beside it can be imported.
    """
    if isinstance(spec, PythonModelSpec):
        return PythonModel(name, spec, search_path=base_dir)
    if isinstance(spec, OnnxModelSpec):
        return OnnxModel(name, spec, _resolve(spec.uri, base_dir))
    if isinstance(spec, SklearnModelSpec):
        return SklearnModel(name, spec, _resolve(spec.uri, base_dir))
    if isinstance(spec, OipModelSpec):
        return OipModel(name, spec)
    raise ConfigError(f"model {name}: unknown runtime {getattr(spec, 'runtime', spec)!r}")


def _resolve(uri: str, base_dir: Path) -> Path:
    path = Path(uri).expanduser()
    return path if path.is_absolute() else base_dir / path
