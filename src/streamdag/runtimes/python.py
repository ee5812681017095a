"""Runtime ``python``: a handler ``module:attr`` that is a function or a ``Model`` subclass."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar, cast

from numpy.typing import NDArray
from pydantic import Field, field_validator

from streamdag.errors import ConfigError, ModelError
from streamdag.runtimes._usercode import (
    IMPORT_PATH,
    as_outputs,
    call_user,
    import_object,
    missing_module,
)
from streamdag.runtimes.base import (
    Model,
    ModelMetadata,
    TensorSpec,
    check_inputs,
    check_outputs,
)
from streamdag.runtimes.config import Problem, RuntimeSpec, TensorDecl

__all__ = ["PythonModel", "PythonModelSpec"]

_Handler = Callable[..., object]
_T = TypeVar("_T")


class PythonModelSpec(RuntimeSpec):
    """A Python function ``dict[str, ndarray] -> dict[str, ndarray]`` or a Model class."""

    runtime: Literal["python"]
    handler: str = Field(pattern=IMPORT_PATH, description="module:attr")
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Options for the handler: a function that takes a `parameters` argument "
        "gets them on every call, a Model class that takes the spec reads spec.parameters.",
    )
    inputs: list[TensorDecl] | None = Field(
        default=None,
        description="The input tensors the handler takes, when declared: requests are checked "
        "against them (at the front door too) and model metadata shows them.",
    )
    outputs: list[str] | list[TensorDecl] | None = Field(
        default=None,
        description="The tensors the handler returns, when declared: names, or name, datatype "
        "and shape each, which model metadata then shows and every result is checked against.",
    )

    def problems(self) -> list[Problem]:
        return missing_module("handler", self.handler)

    @property
    def output_names(self) -> list[str] | None:
        if self.outputs is None:
            return None
        return [o if isinstance(o, str) else o.name for o in self.outputs]

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs_alike(cls, value: object) -> object:
        if isinstance(value, list) and value:
            named = [isinstance(o, str) for o in value]
            if any(named) and not all(named):
                raise ValueError(
                    "declare every output with name and datatype, or name them all, not a mix"
                )
        return value

    @field_validator("inputs")
    @classmethod
    def _unique_inputs(cls, value: list[TensorDecl] | None) -> list[TensorDecl] | None:
        if value is not None:
            names = [decl.name for decl in value]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"input {twice[0]!r} is declared more than once")
            if not value:
                raise ValueError("declare at least one input, or leave inputs out")
        return value


class PythonModel(Model):
    """Runs a Python handler.

    A function gets the micro-batch and returns named arrays; only the batch length is
    checked, and the inputs the spec declares (``inputs:``) if it does. A function with a
    ``parameters`` argument also gets the spec's ``parameters:`` (a read-only mapping) on
    every call. A ``Model`` subclass is created with no arguments, or with the spec if its
    ``__init__`` takes one (options are then in ``spec.parameters``), and its own metadata
    is checked, with the spec's ``inputs`` in place of its own when given. Parameters that
    neither kind of handler can take are a ``ConfigError`` at load, never ignored.
    ``search_path`` (the pipeline file's folder) goes on ``sys.path`` so that handler
    modules beside the spec import without being installed.
    """

    spec_class = PythonModelSpec

    def __init__(
        self, name: str, spec: PythonModelSpec, *, search_path: Path | None = None
    ) -> None:
        self.name = name
        self.spec = spec
        self.search_path = search_path
        self._function: _Handler | None = None
        self._options: dict[str, Any] = {}
        self._model: Model | None = None
        self._metadata: ModelMetadata | None = None

    @classmethod
    def from_spec(cls, name: str, spec: RuntimeSpec, base_dir: Path) -> PythonModel:
        return cls(name, cast(PythonModelSpec, spec), search_path=base_dir)

    def load(self) -> None:
        handler = self.spec.handler
        target = import_object(f"model {self.name}", "handler", handler, self.search_path)
        if inspect.isclass(target):
            if not issubclass(target, Model):
                raise ConfigError(
                    f"model {self.name}: handler {handler!r} is a class but not a "
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
            if _takes_parameters(target):
                self._options = {"parameters": MappingProxyType(dict(self.spec.parameters))}
            elif self.spec.parameters:
                raise ConfigError(
                    f"model {self.name}: handler {handler!r} takes no `parameters` argument, "
                    f"so it cannot receive parameters: {', '.join(self.spec.parameters)}"
                )
            self._function = target
            self._metadata = ModelMetadata(
                self.name,
                "python",
                inputs=_specs(self.spec.inputs),
                outputs=_specs(self.spec.outputs),
            )
        else:
            raise ConfigError(
                f"model {self.name}: handler {handler!r} is a "
                f"{type(target).__name__}, not a function or a Model class"
            )

    def predict(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        meta = self.metadata()
        rows = check_inputs(meta, inputs)
        if self._model is not None:
            result: object = self._user_code("predict()", self._model.predict, inputs)
        else:
            assert self._function is not None  # metadata() above proved load() ran
            result = self._user_code("the function", self._function, inputs, **self._options)
        outputs = as_outputs(f"model {self.name}", f"handler {self.spec.handler!r}", result)
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

    def _instantiate(self, cls: type[Model]) -> Model:
        try:
            signature = inspect.signature(cls)
        except (TypeError, ValueError):  # some C-level __init__ have no signature
            signature = None
        params = [
            p
            for p in (signature.parameters.values() if signature is not None else ())
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        required = [p for p in params if p.default is p.empty]
        if len(required) > 1 or (required and required[0] not in positional):
            raise ConfigError(
                f"model {self.name}: handler class {self.spec.handler!r} must take no "
                "arguments or one (the model spec)"
            )
        if not positional and self.spec.parameters:
            raise ConfigError(
                f"model {self.name}: handler class {self.spec.handler!r} takes no arguments, "
                "so it cannot receive parameters; let its __init__ take the model spec and "
                "read spec.parameters"
            )
        args = (self.spec,) if positional else ()
        return self._user_code("the constructor", cls, *args)

    def _user_code(self, what: str, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        where = f"model {self.name}"
        return call_user(where, f"{what} of handler {self.spec.handler!r}", call, *args, **kwargs)


def _takes_parameters(function: Callable[..., object]) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    found = signature.parameters.get("parameters")
    return found is not None and found.kind is not found.POSITIONAL_ONLY


def _specs(declared: Sequence[str | TensorDecl] | None) -> list[TensorSpec]:
    """What the spec declares with datatypes, which takes the place of what a Model class
    declares; names alone (``outputs: [y]``) declare nothing to check."""
    return [
        TensorSpec(d.name, d.datatype, list(d.shape))
        for d in declared or ()
        if not isinstance(d, str)
    ]
