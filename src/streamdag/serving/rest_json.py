"""JSON at the REST door: orjson, with tensor data written straight from numpy.

orjson parses and writes JSON several times faster than the standard library, and writes
a numpy array without first turning each element into a Python object. Two things it does
not do are kept from the OIP JSON form (``protocol.jsonform``): it refuses the ``NaN`` and
``Infinity`` literals and reads integers beyond 64 bits as floats, so such a body goes to
the full parser instead (``loads`` answers None), and it would write a non-finite float as ``null``,
so a float tensor holding one is written with the literals by the standard library.

FP32 elements are written as the shortest decimal that reads back as the same FP32 value
(``0.1``, not the float64 expansion ``0.10000000149011612``); FP16 ones with enough
digits to read back as the same FP16 value.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import orjson

from streamdag.protocol import Array, ParameterValue
from streamdag.protocol.jsondata import array_to_json

__all__ = ["dumps", "header_dumps", "loads", "tensor_data"]

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
# 19 digits in a row may be an integer beyond int64 (the shortest float reprs have at most 17).
_LONG_NUMBER = re.compile(rb"\d{19}")
# Elements per orjson call in a long data list: a few ms of work each, so a reply of
# millions of numbers, written from a worker thread, lets the event loop run between them.
_SLICE = 262_144
# The same for the standard library (non-finite floats), about ten times slower.
_SLOW_SLICE = 16_384


def loads(body: bytes) -> Any | None:
    """The parsed body, or None when it is for the full parser: orjson refuses it (not
    JSON, or ``NaN`` / ``Infinity`` literals), or it may hold an integer over 64 bits,
    which orjson would silently read as a float."""
    if _LONG_NUMBER.search(body):
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def dumps(body: Any) -> bytes:
    """JSON bytes of a body of plain values without floats (metadata, errors, ids); an
    integer beyond 64 bits, which orjson cannot write, goes to the standard library."""
    try:
        return orjson.dumps(body, option=_NUMPY)
    except TypeError:  # e.g. an integer beyond 64 bits
        return json.dumps(body, allow_nan=True, separators=(",", ":")).encode()


def header_dumps(body: dict[str, Any]) -> bytes:
    """``dumps`` for the part of a reply around its tensor data: names, shapes and
    parameters, whose floats may be non-finite."""
    if any(_non_finite(value) for value in _parameter_values(body)):
        return json.dumps(body, allow_nan=True, separators=(",", ":")).encode()
    return orjson.dumps(body)


def tensor_data(values: Array, datatype: str) -> tuple[bytes, bool]:
    """The JSON ``data`` list of a tensor, flat and row-major, and whether it is base64
    BYTES (elements that are not all UTF-8, written as MLServer marks them)."""
    if datatype == "BYTES":
        strings, is_base64 = array_to_json(values, datatype)
        return orjson.dumps(strings), is_base64
    flat = values.reshape(-1)
    if not flat.dtype.isnative:
        flat = flat.astype(flat.dtype.newbyteorder("="))
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        return _slices(flat, _SLOW_SLICE, _literal_dumps), False
    return _slices(flat, _SLICE, _numpy_dumps), False


def _numpy_dumps(values: Array) -> bytes:
    return orjson.dumps(values, option=_NUMPY)


def _literal_dumps(values: Array) -> bytes:
    return json.dumps(values.tolist(), allow_nan=True, separators=(",", ":")).encode()


def _slices(flat: Array, size: int, write: Any) -> bytes:
    if flat.size <= size:
        data: bytes = write(flat)
        return data
    parts = [write(flat[start : start + size])[1:-1] for start in range(0, flat.size, size)]
    return b"[" + b",".join(parts) + b"]"


def _parameter_values(body: dict[str, Any]) -> list[ParameterValue]:
    values = list(body.get("parameters", {}).values())
    for tensor in body.get("outputs", ()):
        values += tensor.get("parameters", {}).values()
    return values


def _non_finite(value: object) -> bool:
    return isinstance(value, float) and not np.isfinite(value)
