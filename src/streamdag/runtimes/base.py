"""The Model interface every runtime implements, and the checks around one micro-batch.

A micro-batch is ``dict[str, ndarray]``: every tensor's first axis is the batch (the rows of
several requests concatenated); BYTES tensors are numpy object arrays of ``bytes``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, cast

import numpy as np
from numpy.typing import NDArray

from streamdag.errors import ConfigError, InvalidInput, ModelError
from streamdag.protocol.datatypes import DATATYPES
from streamdag.protocol.datatypes import datatype_of as protocol_datatype_of
from streamdag.runtimes.config import RuntimeSpec

__all__ = [
    "DATATYPES",
    "Model",
    "ModelMetadata",
    "TensorSpec",
    "check_inputs",
    "check_outputs",
    "datatype_of",
]


def datatype_of(dtype: np.dtype[Any]) -> str | None:
    """The OIP datatype of a numpy dtype, or None when a model may not use it: OIP has none
    (e.g. complex), or text arrays (``<U5``, ``S5``), where models hand BYTES as object
    arrays of ``bytes``."""
    if dtype.kind in "SU":
        return None
    try:
        return protocol_datatype_of(np.empty(0, dtype=dtype))
    except InvalidInput:
        return None


@dataclass(frozen=True)
class TensorSpec:
    """One declared input or output.

    ``shape`` includes the batch dimension first (declared ``-1``); ``-1`` marks any variable
    dimension. An empty shape means the rank is unknown: only the batch axis is checked.
    """

    name: str
    datatype: str
    shape: list[int]

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            raise ConfigError(
                f"tensor {self.name!r}: unknown datatype {self.datatype!r}; "
                f"expected one of {', '.join(DATATYPES)}"
            )


@dataclass(frozen=True)
class ModelMetadata:
    """What a loaded model declares; empty ``inputs``/``outputs`` mean "not checked"."""

    name: str
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class Model(ABC):
    """A model that the engine and the servers run on micro-batches.

    The lifecycle is ``load()`` once, ``predict()`` any number of times, ``unload()`` once.
    Write a subclass and name it as a ``python`` handler or a ``custom`` implementation to
    bring your own model; give it a ``spec_class`` to make it a runtime of its own
    (docs/runtimes.md).
    """

    spec_class: ClassVar[type[RuntimeSpec] | None] = None
    """A runtime's declaration: the ``RuntimeSpec`` subclass that validates what a pipeline
    writes under ``models:`` for it. None for a plain model."""

    @classmethod
    def from_spec(cls, name: str, spec: RuntimeSpec, base_dir: Path) -> Self:
        """The runtime of model ``name`` as ``spec`` (a ``spec_class`` instance) declares it,
        not loaded yet. Called wherever a pipeline is read, so keep it cheap: the work
        belongs in ``load()``. ``base_dir`` is the pipeline file's folder, which relative
        paths are resolved against. The default calls ``cls(name, spec)``; a failure is a
        ``ConfigError``.
        """
        # Model itself takes no arguments; a runtime relying on this default takes these two.
        build = cast("Callable[[str, RuntimeSpec], Self]", cls)
        return build(name, spec)

    @abstractmethod
    def load(self) -> None:
        """Prepare the model; called once per worker process, before the first ``predict()``.

        Raising stops the worker from starting. Runtimes raise ``ConfigError`` when the
        declaration cannot be used (missing file, bad handler) and ``ModelError`` when the
        model's own code fails; either message names the model.
        """

    @abstractmethod
    def predict(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """Run one micro-batch and return named arrays with the same first-axis length.

        Every input's first axis is the batch: the rows of several requests, concatenated.
        Synchronous: the engine calls it in a worker thread, the servers in an executor, so
        calls may overlap; the built-in runtimes allow that.

        Raise ``InvalidInput`` when the inputs do not fit the model (not retried); any other
        exception is a model error for the whole batch, after which the engine retries and
        isolates the records one by one.
        """

    def unload(self) -> None:  # noqa: B027 - optional hook, a no-op for most models
        """Release what ``load()`` took; called once at shutdown, after the last ``predict()``.

        A failure here is reported by the caller and does not stop the shutdown.
        """

    def metadata(self) -> ModelMetadata:
        """Describe the inputs and outputs; called after ``load()``, e.g. for OIP metadata.

        The default declares nothing, so inputs and outputs are checked only for the batch.
        """
        return ModelMetadata(name=type(self).__name__, platform="python", inputs=[], outputs=[])


def check_inputs(metadata: ModelMetadata, inputs: Mapping[str, object]) -> int:
    """Check a micro-batch against the declared inputs and return its batch size.

    Raises ``InvalidInput`` naming the tensor, what was expected and what came.
    """
    where = f"model {metadata.name}"
    if not inputs:
        raise InvalidInput(f"{where}: no input tensors")
    declared = {spec.name: spec for spec in metadata.inputs}
    if declared:
        for name in declared:
            if name not in inputs:
                raise InvalidInput(f"{where}: missing input {name!r}; it takes {_names(declared)}")
        for name in inputs:
            if name not in declared:
                raise InvalidInput(f"{where}: unknown input {name!r}; it takes {_names(declared)}")
    rows: int | None = None
    first = ""
    for name, value in inputs.items():
        if not isinstance(value, np.ndarray):
            raise InvalidInput(f"{where}: input {name!r}: {_not_array(value)}")
        problem = _problem(declared.get(name), value)
        if problem is not None:
            raise InvalidInput(f"{where}: input {name!r}: {problem}")
        if rows is None:
            rows, first = value.shape[0], name
        elif value.shape[0] != rows:
            raise InvalidInput(
                f"{where}: input {name!r} has {value.shape[0]} rows but input {first!r} has "
                f"{rows}; every input's first axis is the batch"
            )
    assert rows is not None  # inputs is not empty
    return rows


def check_outputs(metadata: ModelMetadata, outputs: Mapping[str, object], rows: int) -> None:
    """Check what a model returned against its declared outputs and the batch size ``rows``.

    Raises ``ModelError`` naming the tensor, what was expected and what came.
    """
    where = f"model {metadata.name}"
    declared = {spec.name: spec for spec in metadata.outputs}
    if declared:
        for name in declared:
            if name not in outputs:
                raise ModelError(
                    f"{where}: missing output {name!r}; it declares {_names(declared)}"
                )
        for name in outputs:
            if name not in declared:
                raise ModelError(
                    f"{where}: unexpected output {name!r}; it declares {_names(declared)}"
                )
    for name, value in outputs.items():
        if not isinstance(value, np.ndarray):
            raise ModelError(f"{where}: output {name!r}: {_not_array(value)}")
        problem = _problem(declared.get(name), value)
        if problem is not None:
            raise ModelError(f"{where}: output {name!r}: {problem}")
        if value.shape[0] != rows:
            raise ModelError(
                f"{where}: output {name!r} has {value.shape[0]} rows, expected {rows} "
                "(one per input row)"
            )


def _names(declared: Mapping[str, TensorSpec]) -> str:
    return ", ".join(repr(name) for name in declared)


def _not_array(value: object) -> str:
    return f"expected a numpy array, got {type(value).__name__}"


def _problem(spec: TensorSpec | None, value: NDArray[Any]) -> str | None:
    """What is wrong with one tensor, or None; the batch length is the caller's business."""
    if value.ndim == 0:
        return "is a scalar; the first axis must be the batch"
    datatype = datatype_of(value.dtype)
    if datatype is None:
        return (
            f"numpy dtype {value.dtype} has no OIP datatype "
            "(BYTES tensors are numpy object arrays of bytes)"
        )
    if datatype == "BYTES":
        for item in value.flat:
            if not isinstance(item, bytes):
                return f"BYTES tensor holds a {type(item).__name__}, expected bytes"
    if spec is None:
        return None
    if datatype != spec.datatype:
        return f"expected datatype {spec.datatype}, got {datatype}"
    if spec.shape and not _fits(spec.shape, value.shape):
        return f"expected shape {spec.shape}, got {list(value.shape)}"
    return None


def _fits(declared: list[int], actual: tuple[int, ...]) -> bool:
    # The first axis is the batch, whatever the declaration says; rows are checked apart.
    if len(declared) != len(actual):
        return False
    return all(want < 0 or want == got for want, got in zip(declared[1:], actual[1:], strict=True))
