"""What every model declaration under ``models:`` shares: ``RuntimeSpec``, the base of each
runtime's own declaration class, with micro-batching (``BatchConfig``) and a per-call
deadline; and ``TensorDecl``, a declared input or output.

A runtime declares the rest of its fields in its own subclass (see docs/runtimes.md); the
registry picks the subclass by the ``runtime`` field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streamdag.protocol.datatypes import DATATYPES

__all__ = [
    "BatchConfig",
    "Problem",
    "RuntimeSpec",
    "TensorDecl",
    "literal_runtime",
    "resolve_uri",
]

Problem = tuple[str, str]
"""(field path, what is wrong); the path is relative to the model's declaration."""


class BatchConfig(BaseModel):
    """Micro-batching: up to ``max_size`` requests, waiting at most ``max_wait_ms`` for more."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_size: int = Field(default=64, ge=1, le=100_000)
    max_wait_ms: float = Field(default=5.0, ge=0, le=60_000)


class RuntimeSpec(BaseModel):
    """A model's declaration: the fields every runtime shares. A runtime subclasses it
    with its own fields; unknown fields are refused, so typos show up at load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: str = Field(min_length=1, description="The name the runtime is registered under.")
    batch: BatchConfig = Field(default_factory=BatchConfig)
    timeout_ms: int | None = Field(
        default=None, ge=1, description="Per-call deadline; a call past it counts as a failure."
    )

    @property
    def output_names(self) -> list[str] | None:
        """The output tensors the model is known to give, or None when only running it
        would tell; the spec loader checks references to a step's outputs against them."""
        return None

    def problems(self) -> list[Problem]:
        """What is wrong with this declaration that its fields alone do not show (a handler
        module that cannot be found, say); called by the spec loader, so it must not load
        the model. The default finds nothing."""
        return []


class TensorDecl(BaseModel):
    """One tensor a model takes or gives, as OIP model metadata shows it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    datatype: str = Field(description="An OIP datatype: FP32, INT64, BYTES, ...")
    shape: list[int] = Field(
        default_factory=list,
        description="Dimensions, the batch first; -1 for any size. Empty: any rank.",
    )

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str) -> str:
        if value not in DATATYPES:
            raise ValueError(f"unknown datatype {value!r}; expected one of {', '.join(DATATYPES)}")
        return value

    @field_validator("shape")
    @classmethod
    def _dimensions(cls, value: list[int]) -> list[int]:
        bad = [d for d in value if d < -1 or d == 0]
        if bad:
            raise ValueError(f"dimension {bad[0]}: each is -1 (any size) or a positive size")
        return value


def resolve_uri(uri: str, base_dir: Path) -> Path:
    """A model file's path: ``~`` expanded, and a relative ``uri`` taken from ``base_dir``
    (the pipeline file's folder)."""
    path = Path(uri).expanduser()
    return path if path.is_absolute() else base_dir / path


def literal_runtime(spec_class: type[RuntimeSpec]) -> str | None:
    """The one ``runtime`` value a spec class takes when it declares ``runtime:
    Literal["name"]``, else None (it takes any name, as the base class does)."""
    annotation = spec_class.model_fields["runtime"].annotation
    if get_origin(annotation) is Literal:
        values = get_args(annotation)
        if len(values) == 1 and isinstance(values[0], str):
            return values[0]
    return None
