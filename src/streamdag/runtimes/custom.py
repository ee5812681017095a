"""Runtime ``custom``: any ``Model`` subclass, named by ``implementation: "pkg.mod:Class"``,
with a free ``parameters:`` mapping handed to it."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from numpy.typing import NDArray
from pydantic import Field, ValidationError

from streamdag.errors import ConfigError, ModelError
from streamdag.runtimes._usercode import (
    IMPORT_PATH,
    as_outputs,
    call_user,
    import_object,
    missing_module,
)
from streamdag.runtimes.base import Model, ModelMetadata, check_inputs, check_outputs
from streamdag.runtimes.config import Problem, RuntimeSpec, literal_runtime

__all__ = ["CustomModel", "CustomModelSpec"]

_T = TypeVar("_T")


class CustomModelSpec(RuntimeSpec):
    """A model class of your own, with the options it takes."""

    runtime: Literal["custom"]
    implementation: str = Field(
        pattern=IMPORT_PATH, description="module:Class, a subclass of streamdag.runtimes.Model"
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Handed to the class; see CustomModel."
    )

    def problems(self) -> list[Problem]:
        return missing_module("implementation", self.implementation)


class CustomModel(Model):
    """Runs the ``Model`` subclass that ``implementation`` names, imported at ``load()``.

    A runtime class (one with a ``spec_class``) gets ``parameters`` as the fields it would
    be declared with under its own name, validated by its ``spec_class``, and is built by
    its ``from_spec()``; ``batch`` and ``timeout_ms`` are the custom model's own. Any other
    class is built as ``Class(**parameters)``. Its ``load()``, ``predict()`` and
    ``unload()`` are then called through: inputs and outputs are checked against its
    metadata, and an exception outside streamdag's error tree becomes ``ModelError``
    naming the implementation. The pipeline file's folder is on ``sys.path`` for the import.
    """

    spec_class = CustomModelSpec

    def __init__(self, name: str, spec: CustomModelSpec, *, base_dir: Path) -> None:
        self.name = name
        self.spec = spec
        self.base_dir = base_dir
        self._model: Model | None = None
        self._metadata: ModelMetadata | None = None

    @classmethod
    def from_spec(cls, name: str, spec: RuntimeSpec, base_dir: Path) -> CustomModel:
        return cls(name, cast(CustomModelSpec, spec), base_dir=base_dir)

    @property
    def _where(self) -> str:
        return f"model {self.name}"

    @property
    def _source(self) -> str:
        return f"implementation {self.spec.implementation!r}"

    def load(self) -> None:
        path = self.spec.implementation
        target = import_object(self._where, "implementation", path, self.base_dir)
        if not isinstance(target, type) or not issubclass(target, Model):
            kind = "class" if isinstance(target, type) else type(target).__name__
            raise ConfigError(
                f"{self._where}: {self._source} is a {kind}, not a subclass of "
                "streamdag.runtimes.Model"
            )
        model = self._build(target)
        self._user_code("load()", model.load)
        meta = self._user_code("metadata()", model.metadata)
        self._model = model
        self._metadata = dataclasses.replace(meta, name=self.name)

    def predict(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        meta = self.metadata()
        rows = check_inputs(meta, inputs)
        assert self._model is not None  # metadata() above proved load() ran
        result: object = self._user_code("predict()", self._model.predict, inputs)
        outputs = as_outputs(self._where, self._source, result)
        check_outputs(meta, outputs, rows)
        return outputs

    def unload(self) -> None:
        if self._model is not None:
            self._user_code("unload()", self._model.unload)
        self._model = None
        self._metadata = None

    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            raise ModelError(f"{self._where} is not loaded; call load() first")
        return self._metadata

    def _build(self, cls: type[Model]) -> Model:
        parameters = self.spec.parameters
        if cls.spec_class is not None:
            own = sorted(set(parameters) & set(RuntimeSpec.model_fields))
            if own:
                raise ConfigError(
                    f"{self._where}: parameters may not set {', '.join(own)}: write it beside "
                    "`runtime: custom`"
                )
            fields = {
                **parameters,
                "runtime": literal_runtime(cls.spec_class) or self.spec.runtime,
                "batch": self.spec.batch,
                "timeout_ms": self.spec.timeout_ms,
            }
            try:
                spec = cls.spec_class.model_validate(fields)
            except ValidationError as exc:
                raise ConfigError(
                    f"{self._where}: parameters do not fit {self._source}: {_first(exc)}"
                ) from exc
            return self._user_code("from_spec()", cls.from_spec, self.name, spec, self.base_dir)
        try:
            inspect.signature(cls).bind(**parameters)
        except TypeError as exc:
            raise ConfigError(
                f"{self._where}: parameters do not fit {self._source}: {exc}"
            ) from exc
        except ValueError:  # no signature to check against (a C-level __init__)
            pass
        return self._user_code("the constructor", cls, **parameters)

    def _user_code(self, what: str, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return call_user(self._where, f"{what} of {self._source}", call, *args, **kwargs)


def _first(exc: ValidationError) -> str:
    errors = exc.errors()
    error = errors[0]
    field = ".".join(str(part) for part in error["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{field}: {error['msg']}{more}" if field else f"{error['msg']}{more}"
