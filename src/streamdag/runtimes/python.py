"""Runtime ``python``: a handler ``module:attr`` that is a function or a ``Model`` subclass."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from streamdag.errors import ConfigError, ModelError, StreamdagError
from streamdag.runtimes.base import (
    Model,
    ModelMetadata,
    TensorSpec,
    check_inputs,
    check_outputs,
)
from streamdag.runtimes.config import PythonModelSpec, TensorDecl

__all__ = ["PythonModel"]

_Handler = Callable[[dict[str, NDArray[Any]]], object]
_T = TypeVar("_T")


class PythonModel(Model):
    """Runs a Python handler.

    A function gets the micro-batch and returns named arrays; only the batch length is
    checked, and the inputs the spec declares (``inputs:``) if it does. A ``Model``
    subclass is created with no arguments, or with the spec if its ``__init__`` takes one,
    and its own metadata is checked, with the spec's ``inputs`` in place of its own when
    given. ``search_path`` (the pipeline file's folder) goes on ``sys.path`` so that
    handler modules beside the spec import without being installed.
    """

    def __init__(
        self, name: str, spec: PythonModelSpec, *, search_path: Path | None = None
    ) -> None:
        self.name = name
        self.spec = spec
        self.search_path = search_path
        self._function: _Handler | None = None
        self._model: Model | None = None
        self._metadata: ModelMetadata | None = None

    def load(self) -> None:
        target = self._import()
        if inspect.isclass(target):
            if not issubclass(target, Model):
                raise ConfigError(
                    f"model {self.name}: handler {self.spec.handler!r} is a class but not a "
                    "subclass of streamdag.runtimes.Model"
                )
            model = self._instantiate(target)
            self._user_code("load()", model.load)
            meta = self._user_code("metadata()", model.metadata)
            self._model = model
            self._metadata = dataclasses.replace(
                meta,
                name=self.name,
                inputs=_specs(self.spec.inputs) or meta.inputs,
                outputs=_specs(self.spec.outputs) or meta.outputs,
            )
        elif callable(target):
            self._function = target
            self._metadata = ModelMetadata(
                self.name,
                "python",
                inputs=_specs(self.spec.inputs),
                outputs=_specs(self.spec.outputs),
            )
        else:
            raise ConfigError(
                f"model {self.name}: handler {self.spec.handler!r} is a "
                f"{type(target).__name__}, not a function or a Model class"
            )

    def predict(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        meta = self.metadata()
        rows = check_inputs(meta, inputs)
        if self._model is not None:
            result: object = self._user_code("predict()", self._model.predict, inputs)
        else:
            assert self._function is not None  # metadata() above proved load() ran
            result = self._user_code("the function", self._function, inputs)
        outputs = self._as_outputs(result)
        check_outputs(meta, outputs, rows)
        return outputs

    def unload(self) -> None:
        if self._model is not None:
            self._user_code("unload()", self._model.unload)
        self._model = None
        self._function = None
        self._metadata = None

    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            raise ModelError(f"model {self.name} is not loaded; call load() first")
        return self._metadata

    def _import(self) -> object:
        handler = self.spec.handler
        module_name, sep, attr = handler.partition(":")
        if not sep or not module_name or not attr:
            raise ConfigError(
                f"model {self.name}: handler {handler!r} must look like 'module:attr'"
            )
        if self.search_path is not None:
            folder = str(self.search_path.resolve())
            if folder not in sys.path:
                sys.path.insert(0, folder)
        # Files written after the interpreter started (tests, notebooks) must be seen.
        importlib.invalidate_caches()
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name or module_name.startswith(f"{exc.name}."):
                raise ConfigError(
                    f"model {self.name}: cannot import module {module_name!r} of handler "
                    f"{handler!r}: no module named {exc.name!r}"
                ) from exc
            raise ConfigError(self._import_failed(module_name, exc)) from exc
        except Exception as exc:  # the module's own code raised while importing
            raise ConfigError(self._import_failed(module_name, exc)) from exc
        try:
            return getattr(module, attr)
        except AttributeError as exc:
            raise ConfigError(
                f"model {self.name}: module {module_name!r} has no attribute {attr!r} "
                f"(handler {handler!r})"
            ) from exc

    def _import_failed(self, module_name: str, exc: Exception) -> str:
        return (
            f"model {self.name}: importing module {module_name!r} of handler "
            f"{self.spec.handler!r} failed: {type(exc).__name__}: {exc}"
        )

    def _instantiate(self, cls: type[Model]) -> Model:
        try:
            signature = inspect.signature(cls)
        except (TypeError, ValueError):  # some C-level __init__ have no signature
            return self._user_code("the constructor", cls)
        params = [
            p
            for p in signature.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        required = [p for p in params if p.default is p.empty]
        if len(required) > 1 or (required and required[0] not in positional):
            raise ConfigError(
                f"model {self.name}: handler class {self.spec.handler!r} must take no "
                "arguments or one (the model spec)"
            )
        args = (self.spec,) if positional else ()
        return self._user_code("the constructor", cls, *args)

    def _user_code(self, what: str, call: Callable[..., _T], *args: Any) -> _T:
        try:
            return call(*args)
        except StreamdagError:
            raise
        except Exception as exc:
            raise ModelError(
                f"model {self.name}: {what} of handler {self.spec.handler!r} raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _as_outputs(self, result: object) -> dict[str, NDArray[Any]]:
        if not isinstance(result, Mapping):
            raise ModelError(
                f"model {self.name}: handler {self.spec.handler!r} returned "
                f"{type(result).__name__}, expected dict[str, numpy.ndarray]"
            )
        outputs: dict[str, NDArray[Any]] = {}
        for key, value in result.items():
            if not isinstance(key, str) or not isinstance(value, np.ndarray):
                raise ModelError(
                    f"model {self.name}: handler {self.spec.handler!r} returned "
                    f"{type(value).__name__} for key {key!r}, expected dict[str, numpy.ndarray]"
                )
            outputs[key] = value
        return outputs


def _specs(declared: Sequence[str | TensorDecl] | None) -> list[TensorSpec]:
    """What the spec declares with datatypes, which takes the place of what a Model class
    declares; names alone (``outputs: [y]``) declare nothing to check."""
    return [
        TensorSpec(d.name, d.datatype, list(d.shape))
        for d in declared or ()
        if not isinstance(d, str)
    ]
