"""Everything ``streamdag run`` would load, checked without Kafka: ``streamdag validate``.

A worker fails at its first problem, after joining its consumer group; a newcomer then
fixes one thing per start. ``validate_spec`` reads the spec (every field problem at once,
as the loader finds them), then builds and loads every model the pipeline names, as the
workers do (handlers imported, custom classes built with their ``parameters``, model files
read), and unloads them again. It reports every problem it meets, one per entry, and
raises nothing for a problem of the spec: the caller prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamdag.errors import SpecError, StreamdagError
from streamdag.pipeline.loader import load_spec
from streamdag.pipeline.plan import compile_plan
from streamdag.pipeline.spec import PipelineSpec
from streamdag.runtimes.registry import create_model

__all__ = ["Validation", "validate_spec"]


@dataclass
class Validation:
    """What ``validate_spec`` found: the spec (None if it could not be read) and the
    problems, each a line naming the file and what is wrong."""

    spec: PipelineSpec | None = None
    problems: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # the models that loaded


def validate_spec(path: str | Path) -> Validation:
    """Read the pipeline spec at ``path`` and load each of its models; see the module."""
    found = Validation()
    try:
        spec = load_spec(path)
    except SpecError as exc:
        where = f"{exc.file}: " if exc.file else ""
        found.problems = [f"{where}{f}: {p}" if f else f"{where}{p}" for f, p in exc.problems]
        return found
    found.spec = spec
    try:
        compile_plan(spec)
    except StreamdagError as exc:
        found.problems.append(f"{path}: {exc}")
    for name, model_spec in spec.models.items():
        try:
            model = create_model(name, model_spec, spec.base_dir)
            model.load()
        except StreamdagError as exc:
            found.problems.append(f"{path}: {_one_line(str(exc))}")  # names the model
            continue
        except Exception as exc:  # a user's model may raise anything: report, go on
            message = _one_line(f"{type(exc).__name__}: {exc}")
            found.problems.append(f"{path}: model {name}: loading failed: {message}")
            continue
        found.models.append(name)
        try:
            model.unload()
        except Exception as exc:
            message = _one_line(f"{type(exc).__name__}: {exc}")
            found.problems.append(f"{path}: model {name}: unloading failed: {message}")
    return found


def _one_line(text: str) -> str:
    return " ".join(text.split())
