"""OIP datatype names and their numpy dtypes.

Every tensor has one of the thirteen OIP datatypes. Numeric data travel little-endian, so
the wire dtypes here are explicit ``<`` dtypes, while decoded arrays use the native order.
BYTES tensors are numpy object arrays whose elements are ``bytes``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from streamdag.errors import InvalidInput

__all__ = [
    "DATATYPES",
    "Array",
    "Arrays",
    "datatype_of",
    "element_count",
    "numpy_dtype",
    "wire_dtype",
]

Array: TypeAlias = npt.NDArray[Any]
"""Any numpy array; decoded tensors are native-order arrays, BYTES ones of ``bytes``."""

Arrays: TypeAlias = dict[str, Array]
"""Named tensors: a request's inputs or a model's outputs."""

_NATIVE: Final[dict[str, np.dtype[Any]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

DATATYPES: Final[tuple[str, ...]] = tuple(_NATIVE)
"""The OIP datatype names, in the order the spec lists them."""

# numpy's limits: at most 64 dimensions, and an array's bytes counted in a signed 64-bit
# integer; no OIP element is wider than 8 bytes (object pointers included).
_MAX_RANK: Final = 64
_MAX_ELEMENTS: Final = (2**63 - 1) // 8

_WIRE: Final[dict[str, np.dtype[Any]]] = {
    name: dt.newbyteorder("<") for name, dt in _NATIVE.items() if name != "BYTES"
}

# (kind, itemsize) identifies a numeric dtype whatever its byte order.
_BY_KIND: Final[dict[tuple[str, int], str]] = {
    (dt.kind, dt.itemsize): name for name, dt in _NATIVE.items() if name != "BYTES"
}


def _prefix(where: str | None) -> str:
    return f"{where}: " if where else ""


def _unknown(datatype: str, where: str | None) -> InvalidInput:
    return InvalidInput(
        f"{_prefix(where)}unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}"
    )


def numpy_dtype(datatype: str, *, where: str | None = None) -> np.dtype[Any]:
    """The native numpy dtype that decoded tensors of ``datatype`` have.

    ``where`` names the tensor or field in the error raised for an unknown datatype.
    """
    try:
        return _NATIVE[datatype]
    except KeyError:
        raise _unknown(datatype, where) from None


def wire_dtype(datatype: str, *, where: str | None = None) -> np.dtype[Any]:
    """The little-endian dtype of raw contents; BYTES has none (it is length-prefixed)."""
    if datatype == "BYTES":
        raise ValueError("BYTES has no fixed-size wire dtype")
    try:
        return _WIRE[datatype]
    except KeyError:
        raise _unknown(datatype, where) from None


def datatype_of(array: Array, *, where: str | None = None) -> str:
    """The OIP datatype for a numpy array.

    Object, ``bytes_`` (``S``) and ``str_`` (``U``) arrays are BYTES; their elements are
    checked when encoded. ``S`` arrays drop trailing NUL bytes (numpy does), so exact
    binary data belongs in object arrays. Other dtypes (complex, datetime, ...) have no
    OIP datatype.
    """
    dtype = array.dtype
    if dtype.kind in "OSU":
        return "BYTES"
    name = _BY_KIND.get((dtype.kind, dtype.itemsize))
    if name is None:
        raise InvalidInput(f"{_prefix(where)}numpy dtype {dtype} has no OIP datatype")
    return name


def element_count(shape: Iterable[int], *, where: str | None = None) -> int:
    """Number of elements a shape holds; 1 for a 0-d shape, 0 if a dimension is 0.

    A shape no numpy array can take is invalid input, even when it holds no element:
    numpy sizes an array by its non-zero dimensions (``[2**70, 0]`` is refused).
    """
    dims = list(shape)
    if any(d < 0 for d in dims):
        raise InvalidInput(f"{_prefix(where)}shape {dims} has a negative dimension")
    if len(dims) > _MAX_RANK:
        raise InvalidInput(
            f"{_prefix(where)}shape has {len(dims)} dimensions; at most {_MAX_RANK} are supported"
        )
    if math.prod(d for d in dims if d) > _MAX_ELEMENTS:
        raise InvalidInput(f"{_prefix(where)}shape {dims} is larger than any tensor can be")
    return math.prod(dims)
