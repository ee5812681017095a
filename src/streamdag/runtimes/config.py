"""Declarations of models as they appear under ``models:`` in a pipeline spec.

Each runtime owns its declaration; ``runtime`` picks the class. Paths (``uri``) are
resolved against the folder of the spec file by the spec loader.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streamdag.protocol.datatypes import DATATYPES

__all__ = [
    "BatchConfig",
    "ModelSpec",
    "OipModelSpec",
    "OnnxModelSpec",
    "PythonModelSpec",
    "SklearnModelSpec",
    "TensorDecl",
]


class BatchConfig(BaseModel):
    """Micro-batching: up to ``max_size`` requests, waiting at most ``max_wait_ms`` for more."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_size: int = Field(default=64, ge=1, le=100_000)
    max_wait_ms: float = Field(default=5.0, ge=0, le=60_000)


class _BaseModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    batch: BatchConfig = Field(default_factory=BatchConfig)
    timeout_ms: int | None = Field(
        default=None, ge=1, description="Per-call deadline; a call past it counts as a failure."
    )


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


class PythonModelSpec(_BaseModelSpec):
    """A Python function ``dict[str, ndarray] -> dict[str, ndarray]`` or a Model class."""

    runtime: Literal["python"]
    handler: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="module:attr")
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


class OnnxModelSpec(_BaseModelSpec):
    """An ONNX file run by onnxruntime on CPU."""

    runtime: Literal["onnx"]
    uri: str
    intra_op_threads: int = Field(default=1, ge=0)


SklearnMethod = Literal["predict", "predict_proba", "decision_function", "transform"]


def _default_sklearn_outputs() -> list[SklearnMethod]:
    return ["predict"]


class SklearnModelSpec(_BaseModelSpec):
    """A joblib-pickled scikit-learn estimator; one input tensor, named outputs."""

    runtime: Literal["sklearn"]
    uri: str
    input: str = "input"
    outputs: list[SklearnMethod] = Field(default_factory=_default_sklearn_outputs, min_length=1)


class OipModelSpec(_BaseModelSpec):
    """A model on a remote Open Inference Protocol server (Triton, MLServer, streamdag)."""

    runtime: Literal["oip"]
    protocol: Literal["grpc", "rest"] = "grpc"
    url: str = Field(
        min_length=1, description="gRPC host:port, or the REST base URL (http://host:port)."
    )
    model: str = Field(min_length=1, description="The model's name on the remote server.")
    version: str | None = None
    attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Tries per call while the server is unavailable (gRPC UNAVAILABLE, no "
        "connection, HTTP 503), all within timeout_ms (default 30 s).",
    )
    backoff_ms: float = Field(
        default=100.0, ge=0, le=60_000, description="Wait before the 2nd try; doubled after."
    )


ModelSpec = Annotated[
    PythonModelSpec | OnnxModelSpec | SklearnModelSpec | OipModelSpec,
    Field(discriminator="runtime"),
]
