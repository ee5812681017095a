"""Running user code (a python handler, a custom implementation): importing what
``module:attr`` names, calling it, and taking its results, with errors that name the model,
the field and what went wrong."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from streamdag.errors import ConfigError, ModelError, StreamdagError
from streamdag.runtimes.config import Problem

__all__ = ["IMPORT_PATH", "as_outputs", "call_user", "import_object", "missing_module"]

_T = TypeVar("_T")

IMPORT_PATH = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
"""The pattern of ``module:attr``: a dotted module, a colon, one attribute."""


def missing_module(field: str, path: str) -> list[Problem]:
    """A problem when the module of ``path`` cannot be found; nothing is imported, so the
    spec loader does not run user code."""
    module = path.partition(":")[0]
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is not None:
        return []
    return [(field, f"module {module!r} not found (looked next to the spec file and on sys.path)")]


def import_object(where: str, field: str, path: str, search_path: Path | None) -> object:
    """The object ``path`` (``module:attr``) names, imported with ``search_path`` (the
    pipeline file's folder) on ``sys.path``; ``ConfigError`` starting with ``where``."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{where}: {field} {path!r} must look like 'module:attr'")
    if search_path is not None:
        folder = str(search_path.resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)
    # Files written after the interpreter started (tests, notebooks) must be seen.
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise ConfigError(
                f"{where}: cannot import module {module_name!r} of {field} {path!r}: "
                f"no module named {exc.name!r}"
            ) from exc
        raise ConfigError(_failed(where, field, path, module_name, exc)) from exc
    except Exception as exc:  # the module's own code raised while importing
        raise ConfigError(_failed(where, field, path, module_name, exc)) from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ConfigError(
            f"{where}: module {module_name!r} has no attribute {attr!r} ({field} {path!r})"
        ) from exc


def _failed(where: str, field: str, path: str, module_name: str, exc: Exception) -> str:
    return (
        f"{where}: importing module {module_name!r} of {field} {path!r} failed: "
        f"{type(exc).__name__}: {exc}"
    )


def call_user(where: str, what: str, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``call(*args, **kwargs)``; an exception outside the error tree becomes ``ModelError``
    naming ``what`` ran (e.g. "load() of handler 'm:C'"), so the engine can report it."""
    try:
        return call(*args, **kwargs)
    except StreamdagError:
        raise
    except Exception as exc:
        raise ModelError(f"{where}: {what} raised {type(exc).__name__}: {exc}") from exc


def as_outputs(where: str, source: str, result: object) -> dict[str, NDArray[Any]]:
    """``result`` as named arrays, or ``ModelError`` saying what ``source`` returned."""
    if not isinstance(result, Mapping):
        raise ModelError(
            f"{where}: {source} returned {type(result).__name__}, expected dict[str, numpy.ndarray]"
        )
    outputs: dict[str, NDArray[Any]] = {}
    for key, value in result.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise ModelError(
                f"{where}: {source} returned {type(value).__name__} for key {key!r}, "
                "expected dict[str, numpy.ndarray]"
            )
        outputs[key] = value
    return outputs
