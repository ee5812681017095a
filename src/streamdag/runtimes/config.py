"""Declarations of models as they appear under ``models:`` in a pipeline spec.

Each runtime owns its declaration; ``runtime`` picks the class. Paths (``uri``) are
resolved against the folder of the spec file by the spec loader.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BatchConfig",
    "ModelSpec",
    "OipModelSpec",
    "OnnxModelSpec",
    "PythonModelSpec",
    "SklearnModelSpec",
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


class PythonModelSpec(_BaseModelSpec):
    """A Python function ``dict[str, ndarray] -> dict[str, ndarray]`` or a Model class."""

    runtime: Literal["python"]
    handler: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="module:attr")
    outputs: list[str] | None = Field(
        default=None, description="Names of the tensors the handler returns, when declared."
    )


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
