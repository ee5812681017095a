"""InferParameter maps <-> Python values."""

from __future__ import annotations

import pytest

from streamdag.errors import InvalidInput
from streamdag.protocol import (
    InferParameter,
    ModelInferRequest,
    parameter_value,
    read_parameters,
    write_parameters,
)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (True, "bool_param"),
        (False, "bool_param"),
        (0, "int64_param"),
        (-(2**63), "int64_param"),
        (2**63 - 1, "int64_param"),
        (2**63, "uint64_param"),
        (2**64 - 1, "uint64_param"),
        (1.25, "double_param"),
        ("text", "string_param"),
        ("", "string_param"),
    ],
)
def test_each_kind_round_trips(value: object, field: str) -> None:
    request = ModelInferRequest()
    write_parameters(request.parameters, {"k": value})
    wire = ModelInferRequest.FromString(request.SerializeToString())
    assert wire.parameters["k"].WhichOneof("parameter_choice") == field
    got = read_parameters(wire.parameters)["k"]
    assert got == value
    assert type(got) is type(value)


def test_read_parameters_sorts_keys() -> None:
    request = ModelInferRequest()
    write_parameters(request.parameters, {"b": 1, "a": 2})
    assert list(read_parameters(request.parameters)) == ["a", "b"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2**64, "parameters.k: integer 18446744073709551616 is out of the 64-bit range"),
        (-(2**63) - 1, "parameters.k: integer -9223372036854775809 is out of the 64-bit range"),
        ({"a": 1}, "parameters.k: expected a string, number or boolean, got dict"),
        (None, "parameters.k: expected a string, number or boolean, got NoneType"),
    ],
)
def test_unsupported_values_write_nothing(value: object, message: str) -> None:
    request = ModelInferRequest()
    with pytest.raises(InvalidInput) as caught:
        write_parameters(request.parameters, {"ok": 1, "k": value})
    assert str(caught.value) == message
    assert len(request.parameters) == 0


def test_unset_parameter_is_invalid() -> None:
    with pytest.raises(InvalidInput, match=r"parameters\.k: parameter has no value"):
        parameter_value(InferParameter(), name="parameters.k")
