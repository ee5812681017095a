"""Rows to requests and answers to result rows.

A row is a mapping of column -> value. Its columns become the request's tensors by name
(``mapping`` renames), typed by what the pipeline declares for them: the inputs declared
by the models of the steps that read the request (a ``python`` model's ``inputs:``). Each
value gains the batch axis (a scalar becomes shape ``[1]``, or ``[1, 1]`` when the
declaration has two dimensions). A column the pipeline does not declare is typed by its
value (float FP32, int INT64, bool BOOL, text BYTES), as ``streamdag infer`` does.

A row that does not fit the declared inputs is refused here, with the checks the front
doors make (``serving.checks``), so it never reaches Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamdag.errors import InvalidInput
from streamdag.kafka import headers as h
from streamdag.pipeline import PipelinePlan
from streamdag.protocol import Array, ModelInferRequest, encode_request, numpy_dtype
from streamdag.runtimes import ModelMetadata, TensorSpec
from streamdag.serving.checks import check_pipeline_inputs, check_request_id

__all__ = ["BulkResult", "RowEncoder", "error_row", "result_row"]


@dataclass
class BulkResult:
    """One row's answer: its ``outputs`` and the ``step`` that answered, or ``error``."""

    id: str
    row: int
    outputs: dict[str, Array]
    step: str | None = None
    error: h.ErrorInfo | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class RowEncoder:
    """Turns rows into requests of ``plan``'s pipeline, typed by its declared inputs."""

    def __init__(self, plan: PipelinePlan, mapping: Mapping[str, str] | None = None) -> None:
        self.plan = plan
        self.mapping = dict(mapping or {})
        self._metadata: dict[str, ModelMetadata | None] = {}
        self.declared: dict[str, TensorSpec] = {}  # request tensor -> declaration
        self.closed = True  # every tensor the pipeline reads from a request is known
        for step in plan.steps:
            refs = [r for r in step.refs if r.is_pipeline]
            if not refs:
                continue
            meta = self._declared_metadata(step.model or "")
            named = [r.tensor for r in refs if r.tensor is not None]
            if meta is None:
                self.closed = self.closed and len(named) == len(refs)
                continue
            renamed = {v: k.removeprefix("pipeline.inputs.") for k, v in step.tensor_map.items()}
            for spec in meta.inputs:
                self.declared.setdefault(renamed.get(spec.name, spec.name), spec)
        self.closed = self.closed and bool(self.declared)

    def _declared_metadata(self, model: str) -> ModelMetadata | None:
        """What the spec declares of ``model``'s inputs, without loading it."""
        if model not in self._metadata:
            found = self.plan.spec.models.get(model)
            decls = getattr(found, "inputs", None) or []
            specs = [TensorSpec(d.name, d.datatype, list(d.shape)) for d in decls]
            self._metadata[model] = ModelMetadata(model, "", specs, []) if specs else None
        return self._metadata[model]

    def encode(self, row_id: str, columns: Mapping[str, Any]) -> ModelInferRequest:
        """The request of one row; ``InvalidInput`` names what does not fit."""
        check_request_id(row_id)
        arrays: dict[str, Array] = {}
        for column, value in columns.items():
            name = self.mapping.get(column, column)
            spec = self.declared.get(name)
            if spec is None and self.closed:
                continue  # a column no step reads: kept out of the request
            arrays[name] = _array(name, value, spec)
        if not arrays:
            raise InvalidInput(f"pipeline {self.plan.name}: the row has no input columns")
        check_pipeline_inputs(self.plan, arrays, self._declared_metadata)
        return encode_request(self.plan.name, arrays, id=row_id)


def _array(name: str, value: Any, spec: TensorSpec | None) -> Array:
    datatype = spec.datatype if spec is not None else _datatype_of(value)
    try:
        if datatype == "BYTES":
            array = np.empty(1, dtype=object)
            array[0] = value.encode() if isinstance(value, str) else bytes(value)
            if spec is not None and len(spec.shape) > 1:
                array = array.reshape((1,) * len(spec.shape))
            return array
        array = np.asarray(value, dtype=numpy_dtype(datatype))
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"column {name!r}: {value!r} is not {datatype}: {exc}") from None
    array = array.reshape((1, *array.shape))  # the batch axis
    if spec is not None and len(spec.shape) > array.ndim:
        array = array.reshape(array.shape + (1,) * (len(spec.shape) - array.ndim))
    return array


def _datatype_of(value: Any) -> str:
    first = value
    while isinstance(first, list | tuple) and first:
        first = first[0]
    if isinstance(first, bool | np.bool_):
        return "BOOL"
    if isinstance(first, int | np.integer):
        return "INT64"
    if isinstance(first, float | np.floating):
        return "FP32"
    return "BYTES"


def result_row(result: BulkResult) -> dict[str, Any]:
    """A result as one output row: the id, every output tensor (its first row: the batch
    axis of one request), and the step that answered."""
    row: dict[str, Any] = {"id": result.id}
    for name, array in result.outputs.items():
        row[name] = _plain(array[0] if array.ndim > 1 else array.reshape(-1)[0])
    row["step"] = result.step
    return row


def error_row(result: BulkResult) -> dict[str, Any]:
    """A failure as one row of the errors file."""
    error = result.error
    assert error is not None
    return {
        "id": result.id,
        "row": result.row,
        "code": error.code,
        "step": error.step or None,
        "message": error.message,
    }


def _plain(value: Any) -> Any:
    """Python values for JSON and Arrow: BYTES as text (bytes that are not UTF-8 stay
    bytes), numbers as Python numbers."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [_plain(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
