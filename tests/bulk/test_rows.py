"""Rows to requests and answers to rows, with no broker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from streamdag.bulk import BulkResult, RowEncoder, result_row
from streamdag.bulk.rows import error_row
from streamdag.errors import InvalidInput
from streamdag.kafka.headers import ErrorInfo
from streamdag.pipeline import compile_plan, parse_spec
from streamdag.pipeline.plan import PipelinePlan
from streamdag.protocol import decode_request

HERE = Path(__file__).parent

SPEC = """
name: p
models:
  m:
    runtime: python
    handler: "bulk_models:double"
    inputs: [{name: x, datatype: INT64, shape: [-1, 1]}, {name: text, datatype: BYTES}]
    outputs: [y]
steps:
  - {name: s, model: m}
"""


def _plan(text: str) -> PipelinePlan:
    return compile_plan(parse_spec(yaml.safe_load(text), base_dir=HERE))


@pytest.fixture
def encoder() -> RowEncoder:
    return RowEncoder(_plan(SPEC), {"body": "text"})


def test_columns_become_declared_tensors(encoder: RowEncoder) -> None:
    request = encoder.encode("r1", {"x": "7", "body": "a note", "extra": 1})
    arrays = decode_request(request)
    assert request.id == "r1"
    assert set(arrays) == {"x", "text"}  # a column no step reads stays out
    assert arrays["x"].dtype == np.int64 and arrays["x"].tolist() == [[7]]
    assert arrays["text"].tolist() == [b"a note"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"x": "seven", "body": "a"}, "column 'x'"),
        ({"body": "a"}, "missing input 'x'"),
        ({"nothing": 1}, "no input columns"),
    ],
)
def test_a_row_that_does_not_fit_is_refused(
    encoder: RowEncoder, columns: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        encoder.encode("r1", columns)


def test_undeclared_inputs_are_typed_by_value() -> None:
    spec = SPEC.replace(
        "    inputs: [{name: x, datatype: INT64, shape: [-1, 1]}, {name: text, datatype: BYTES}]\n",
        "",
    )
    arrays = decode_request(RowEncoder(_plan(spec)).encode("r", {"a": 1.5, "b": [1, 2]}))
    assert arrays["a"].dtype == np.float32 and arrays["a"].tolist() == [1.5]
    assert arrays["b"].dtype == np.int64 and arrays["b"].tolist() == [[1, 2]]


def test_result_and_error_rows() -> None:
    outputs = {"y": np.array([[2, 4]]), "label": np.array([b"ok"], dtype=object)}
    row = result_row(BulkResult("r1", 0, outputs, "s"))
    assert row == {"id": "r1", "y": [2, 4], "label": "ok", "step": "s"}
    failed = BulkResult("r2", 3, {}, "s", ErrorInfo("model_error", "boom", "s"))
    assert error_row(failed) == {
        "id": "r2", "row": 3, "code": "model_error", "step": "s", "message": "boom"
    }  # fmt: skip
