"""The pipeline spec: pydantic models of the YAML (see docs/pipelines.md).

Field-level rules live here; rules that need the whole graph (unknown references,
cycles, joins) live in ``graph.py`` so that each message can name the offending field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from streamdag.runtimes.registry import ModelSpec

__all__ = [
    "PIPELINE_SOURCE",
    "RESERVED_STEP_NAMES",
    "InputRef",
    "OutputSpec",
    "PipelineSpec",
    "RetryConfig",
    "StepSpec",
    "parse_ref",
]

PIPELINE_SOURCE = "pipeline"
# Step names that would collide with the pipeline's own derived topics or references.
RESERVED_STEP_NAMES = frozenset({"pipeline", "inputs", "outputs", "errors", "output"})

_NAME = r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$"
_REF = re.compile(r"^(?P<source>[a-z0-9_-]+)\.(?P<kind>inputs|outputs)(?:\.(?P<tensor>[^.\s]+))?$")


@dataclass(frozen=True)
class InputRef:
    """A parsed input reference: ``pipeline.inputs[.tensor]`` or ``<step>.outputs[.tensor]``."""

    source: str
    tensor: str | None = None

    @property
    def is_pipeline(self) -> bool:
        return self.source == PIPELINE_SOURCE

    def __str__(self) -> str:
        kind = "inputs" if self.is_pipeline else "outputs"
        return f"{self.source}.{kind}" + (f".{self.tensor}" if self.tensor else "")


def parse_ref(text: str) -> InputRef:
    """Parse a reference; raise ValueError saying what a valid one looks like."""
    match = _REF.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a reference: use pipeline.inputs, pipeline.inputs.<tensor>, "
            "<step>.outputs or <step>.outputs.<tensor>"
        )
    source, kind = match["source"], match["kind"]
    if (source == PIPELINE_SOURCE) != (kind == "inputs"):
        raise ValueError(f"{text!r}: only the pipeline has .inputs and only steps have .outputs")
    return InputRef(source=source, tensor=match["tensor"])


class RetryConfig(BaseModel):
    """How a failing model call is retried before the record goes to the errors topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff_ms: float = Field(default=100.0, ge=0)
    max_backoff_ms: float = Field(default=5_000.0, ge=0)


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, max_length=100)
    model: str
    inputs: list[str] = Field(default_factory=lambda: ["pipeline.inputs"], min_length=1)
    tensor_map: dict[str, str] = Field(default_factory=dict)
    join: Literal["inner", "outer", "any"] | None = None
    join_window_ms: int = Field(default=10_000, ge=1)
    when: list[str] = Field(default_factory=list)
    retry: RetryConfig | None = None

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_STEP_NAMES:
            raise ValueError(f"{name!r} is reserved; pick another step name")
        return name

    @field_validator("inputs", "when")
    @classmethod
    def _refs_parse(cls, refs: list[str]) -> list[str]:
        for ref in refs:
            parse_ref(ref)
        return refs

    @property
    def input_refs(self) -> list[InputRef]:
        return [parse_ref(r) for r in self.inputs]

    @property
    def trigger_refs(self) -> list[InputRef]:
        return [parse_ref(r) for r in self.when]


class OutputSpec(BaseModel):
    """Which steps make up the pipeline's final response on ``streamdag.<p>.outputs``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[str] = Field(default_factory=list)
    join: Literal["inner", "outer", "any"] = "inner"
    join_window_ms: int = Field(default=10_000, ge=1)


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", max_length=100)
    version: int | str = 1
    guarantee: Literal["exactly_once", "at_least_once"] = "exactly_once"
    partitions: int = Field(default=6, ge=1, le=10_000)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    timeout_ms: int = Field(default=30_000, ge=1, description="Request-reply deadline.")
    models: dict[str, ModelSpec] = Field(min_length=1)
    steps: list[StepSpec] = Field(min_length=1)
    output: OutputSpec = Field(default_factory=OutputSpec)
    # Groups of nodes (step names, and ``output`` for the assembler) that each run as one
    # fused stage: one worker, one consumer group, one transaction (docs/pipelines.md).
    stages: list[list[str]] = Field(default_factory=list)

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: str | None = PrivateAttr(default=None)

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        for name in models:
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
                raise ValueError(
                    f"model name {name!r} may hold only letters, digits, '_', '-' and '.'"
                )
        return models

    @property
    def base_dir(self) -> Path:
        """Folder that relative model paths and handler modules are resolved against."""
        return self._base_dir

    @property
    def source(self) -> str | None:
        """The file this spec was loaded from, if any."""
        return self._source

    def step(self, name: str) -> StepSpec:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    @property
    def output_steps(self) -> list[str]:
        """The declared output steps, or by default every step no other step reads."""
        if self.output.steps:
            return list(self.output.steps)
        read = {ref.source for s in self.steps for ref in [*s.input_refs, *s.trigger_refs]}
        return [s.name for s in self.steps if s.name not in read]
