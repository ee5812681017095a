"""OIP ``parameters`` maps <-> plain Python values.

An ``InferParameter`` holds one bool, int64, uint64, double or string. Python ints go to
``int64_param`` and only spill into ``uint64_param`` above the int64 range, so that peers
that know only the original three kinds (bool, int64, string) read ordinary values.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import TypeAlias

from streamdag.errors import InvalidInput
from streamdag.protocol._generated.inference_pb2 import InferParameter

__all__ = ["ParameterValue", "parameter_value", "read_parameters", "write_parameters"]

ParameterValue: TypeAlias = bool | int | float | str

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1


def parameter_value(param: InferParameter, *, name: str = "parameter") -> ParameterValue:
    """The Python value of one ``InferParameter``; an unset one is invalid input."""
    kind = param.WhichOneof("parameter_choice")
    if kind is None:
        raise InvalidInput(f"{name}: parameter has no value")
    value: ParameterValue = getattr(param, kind)
    return value


def read_parameters(
    params: Mapping[str, InferParameter], *, where: str = "parameters"
) -> dict[str, ParameterValue]:
    """A protobuf parameters map as a plain dict (keys sorted for stable output)."""
    return {key: parameter_value(params[key], name=f"{where}.{key}") for key in sorted(params)}


def _field_for(value: object, name: str) -> str:
    # bool first: it is a subclass of int.
    if isinstance(value, bool):
        return "bool_param"
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return "int64_param"
        if 0 <= value <= _UINT64_MAX:
            return "uint64_param"
        raise InvalidInput(f"{name}: integer {value} is out of the 64-bit range")
    if isinstance(value, float):
        return "double_param"
    if isinstance(value, str):
        return "string_param"
    raise InvalidInput(f"{name}: expected a string, number or boolean, got {type(value).__name__}")


def write_parameters(
    target: MutableMapping[str, InferParameter],
    values: Mapping[str, object],
    *,
    where: str = "parameters",
) -> None:
    """Set each value into a protobuf parameters map (``msg.parameters``).

    Accepts bool, int (int64 or uint64 range), float and str; anything else, such as a
    nested object from a JSON body, is invalid input naming ``where.key``. Nothing is
    written unless every value is valid.
    """
    fields = {key: _field_for(value, f"{where}.{key}") for key, value in values.items()}
    for key, field in fields.items():
        setattr(target[key], field, values[key])
