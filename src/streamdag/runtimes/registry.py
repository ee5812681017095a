"""The runtimes by name, and ``ModelSpec``: a model declaration validated by the class of
the runtime its ``runtime`` field names.

A runtime is a ``Model`` subclass with a ``spec_class`` (docs/runtimes.md). The built-in
ones, and the plug-ins that installed packages declare as entry points of the group
``streamdag.runtimes`` (``keywords = "streamdag_keywords:KeywordModel"``), are known by
name from the first lookup on; each class is imported the first time its name is used,
once per process, so a broken plug-in fails only the pipelines that use it, with a
``ConfigError`` naming it. ``register_runtime`` adds one from code (that process only).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Annotated

from pydantic import PlainValidator, SerializeAsAny, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from streamdag.errors import ConfigError, StreamdagError
from streamdag.runtimes.base import Model
from streamdag.runtimes.config import RuntimeSpec, literal_runtime

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelSpec",
    "create_model",
    "get_runtime",
    "register_runtime",
    "runtime_names",
]

ENTRY_POINT_GROUP = "streamdag.runtimes"

# The built-in runtimes, named as plug-ins name theirs: adding one is one line here.
_BUILTIN = {
    "python": "streamdag.runtimes.python:PythonModel",
    "onnx": "streamdag.runtimes.onnx:OnnxModel",
    "sklearn": "streamdag.runtimes.sklearn:SklearnModel",
    "oip": "streamdag.runtimes.oip:OipModel",
    "custom": "streamdag.runtimes.custom:CustomModel",
}
_NAME = re.compile(r"^[A-Za-z][\w.-]*$")

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    """One runtime name: where its class comes from, and the class once imported."""

    name: str
    origin: str  # for messages: "built-in runtime 'onnx'", "runtime plug-in 'x' (...)"
    point: EntryPoint | None = None
    runtime: type[Model] | None = None
    error: ConfigError | None = None


class _Registry:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._discovered = False
        # Reentrant: a plug-in's module may register more runtimes while it is imported.
        self._lock = threading.RLock()

    def names(self) -> list[str]:
        with self._lock:
            self._discover()
            return list(self._entries)

    def get(self, name: str) -> type[Model]:
        with self._lock:
            self._discover()
            entry = self._entries.get(name)
            if entry is None:
                raise ConfigError(f"unknown runtime {name!r} (runtimes: {self._listing()})")
            if entry.runtime is None and entry.error is None:
                try:
                    entry.runtime = _checked(entry, _load(entry))
                except ConfigError as exc:
                    entry.error = exc  # loaded once: later lookups fail the same way
            if entry.error is not None:
                raise entry.error
            assert entry.runtime is not None
            return entry.runtime

    def register(self, name: str, runtime: type[Model]) -> None:
        with self._lock:
            self._discover()
            if not _NAME.match(name):
                raise ConfigError(f"runtime name {name!r}: use letters, digits, '_', '-', '.'")
            if name in self._entries:
                raise ConfigError(f"runtime {name!r} is already registered")
            entry = _Entry(name, f"runtime {name!r}")
            entry.runtime = _checked(entry, runtime)
            self._entries[name] = entry

    def _listing(self) -> str:
        return ", ".join(repr(name) for name in self._entries)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for name, value in _BUILTIN.items():
            point = EntryPoint(name, value, ENTRY_POINT_GROUP)
            self._entries[name] = _Entry(name, f"built-in runtime {name!r}", point)
        for point in entry_points(group=ENTRY_POINT_GROUP):
            origin = _plugin_origin(point)
            if point.name in _BUILTIN:
                log.warning("%s is ignored: %r is a built-in runtime", origin, point.name)
                continue
            entry = _Entry(point.name, origin, point)
            if not _NAME.match(point.name):
                entry.error = ConfigError(f"{origin}: the name is not a runtime name")
            known = self._entries.get(point.name)
            if known is not None:
                entry.error = ConfigError(
                    f"two plug-ins claim runtime {point.name!r}: {known.origin} and {origin}; "
                    "uninstall one"
                )
            self._entries[point.name] = entry


def _plugin_origin(point: EntryPoint) -> str:
    dist = point.dist
    package = f" of {dist.name} {dist.version}" if dist is not None else ""
    return f"runtime plug-in {point.name!r} ({point.value}{package})"


def _load(entry: _Entry) -> object:
    assert entry.point is not None
    try:
        return entry.point.load()
    except Exception as exc:  # an import runs the plug-in's own code: anything can raise
        raise ConfigError(
            f"{entry.origin} cannot be imported: {type(exc).__name__}: {exc}"
        ) from exc


def _checked(entry: _Entry, runtime: object) -> type[Model]:
    """``runtime`` if it is a runtime class registered under a name its spec accepts."""
    if not isinstance(runtime, type) or not issubclass(runtime, Model):
        kind = f"class {runtime.__name__}" if isinstance(runtime, type) else type(runtime).__name__
        raise ConfigError(f"{entry.origin} is a {kind}, not a subclass of streamdag.runtimes.Model")
    spec_class = runtime.spec_class
    if not isinstance(spec_class, type) or not issubclass(spec_class, RuntimeSpec):
        raise ConfigError(
            f"{entry.origin}: {runtime.__name__}.spec_class must be a subclass of "
            "streamdag.runtimes.RuntimeSpec, the class of its declaration"
        )
    declared = literal_runtime(spec_class)
    if declared is not None and declared != entry.name:
        raise ConfigError(
            f"{entry.origin}: {spec_class.__name__} takes only runtime: {declared}, "
            f"but the runtime is named {entry.name!r}"
        )
    return runtime


_REGISTRY = _Registry()


def runtime_names() -> list[str]:
    """Every runtime name: the built-in ones first, then the plug-ins and registered ones."""
    return _REGISTRY.names()


def get_runtime(name: str) -> type[Model]:
    """The runtime class registered as ``name``, imported on first use; ``ConfigError``
    when the name is unknown or its plug-in is broken (the message names it)."""
    return _REGISTRY.get(name)


def register_runtime(name: str, runtime: type[Model]) -> None:
    """Make ``runtime`` usable as ``runtime: <name>`` in this process. Installed packages
    use the entry point group instead, which reaches every worker process too."""
    _REGISTRY.register(name, runtime)


def create_model(name: str, spec: RuntimeSpec, base_dir: Path) -> Model:
    """The runtime for ``spec``, not loaded yet; call ``load()`` in the process that predicts.

    ``base_dir`` is the pipeline file's folder: relative ``uri`` are resolved against it
    and python handler modules beside it can be imported.
    """
    runtime = get_runtime(spec.runtime)
    assert runtime.spec_class is not None  # checked when the runtime was registered
    if not isinstance(spec, runtime.spec_class):
        raise ConfigError(
            f"model {name}: runtime {spec.runtime!r} takes a {runtime.spec_class.__name__}, "
            f"got a {type(spec).__name__}"
        )
    try:
        return runtime.from_spec(name, spec, base_dir)
    except StreamdagError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"model {name}: runtime {spec.runtime!r} failed to build it: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _validate(value: object) -> RuntimeSpec:
    if isinstance(value, RuntimeSpec):  # built in code, e.g. by model_construct
        return value
    if not isinstance(value, Mapping):
        raise _error((), value, "a model is declared by a mapping: runtime, then its fields")
    name = value.get("runtime")
    names = runtime_names()
    if not isinstance(name, str) or name not in names:
        what = f" {name!r}" if isinstance(name, str) else ""
        listing = ", ".join(repr(n) for n in names)
        raise _error(("runtime",), value, f"unknown or missing runtime{what} (runtimes: {listing})")
    try:
        runtime = get_runtime(name)
    except ConfigError as exc:
        raise _error(("runtime",), value, str(exc)) from exc
    assert runtime.spec_class is not None  # checked when the runtime was registered
    # Its ValidationError is merged into the caller's, under this model's path.
    return runtime.spec_class.model_validate(value)


def _error(loc: tuple[str, ...], value: object, message: str) -> ValidationError:
    problem = PydanticCustomError("runtime", "{message}", {"message": message})
    details = InitErrorDetails(type=problem, loc=loc, input=value)
    return ValidationError.from_exception_data("ModelSpec", [details])


ModelSpec = Annotated[SerializeAsAny[RuntimeSpec], PlainValidator(_validate)]
"""A model declaration, validated by the spec class of the runtime it names; dumped whole."""
