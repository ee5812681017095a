"""Load a pipeline spec from YAML with errors that name the file, the field and the fault."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from streamdag.errors import SpecError
from streamdag.pipeline.graph import check_spec
from streamdag.pipeline.spec import PipelineSpec

__all__ = ["load_spec", "parse_spec"]


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(f".{item}" if parts else str(item))
    return "".join(parts)


def _describe(error: Any) -> str:
    msg: str = error["msg"].removeprefix("Value error, ")
    if error["type"] in {"missing", "extra_forbidden"}:
        return "field required" if error["type"] == "missing" else "unknown field"
    value = error.get("input")
    if isinstance(value, str | int | float) and error["type"] != "value_error":
        return f"{msg} (got {value!r})"
    return msg


def _raise(file: str | None, problems: list[tuple[str, str]]) -> None:
    field, problem = problems[0]
    if len(problems) > 1:
        rest = "; ".join(f"{f}: {p}" for f, p in problems[1:])
        problem = f"{problem}; also {rest}"
    raise SpecError(file, field, problem, problems=problems)


def parse_spec(
    data: Any, *, base_dir: Path | None = None, source: str | None = None
) -> PipelineSpec:
    """Validate a spec given as a mapping; ``base_dir`` resolves paths and handler modules."""
    if not isinstance(data, dict):
        raise SpecError(source, "", "a pipeline spec is a YAML mapping (name, models, steps, ...)")
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        _raise(source, [(_field_path(e["loc"]), _describe(e)) for e in exc.errors()])
        raise  # unreachable: _raise always raises
    base = (base_dir or Path.cwd()).resolve()
    spec._base_dir = base
    spec._source = source
    # Handler modules are looked up next to the spec first, as `uvicorn --app-dir` does.
    if str(base) not in sys.path:
        sys.path.insert(0, str(base))
    problems = check_spec(spec)
    if problems:
        _raise(source, problems)
    return spec


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate a pipeline spec file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(str(path), "", f"cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(str(path), "", f"invalid YAML: {where}{problem}") from exc
    return parse_spec(data, base_dir=path.parent, source=str(path))
