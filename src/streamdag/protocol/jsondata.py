"""The ``data`` of one tensor in the OIP JSON form <-> a numpy array.

Numbers go through one ``np.asarray`` call, which also flattens nested lists in C; only
BYTES elements are visited one by one. Values are checked, not coerced: a string in an
INT32 tensor, a fraction in an integer one, ``true`` in a numeric one or a value out of
the datatype's range is invalid input rather than silently changed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from streamdag.errors import InvalidInput
from streamdag.protocol.datatypes import Array, element_count, numpy_dtype
from streamdag.protocol.tensors import bytes_elements

__all__ = ["array_from_json", "array_to_json"]

# numpy kinds that a JSON array of numbers may parse to, per family of datatypes.
_ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
_EXPECTED = {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers"}
_SLICE = 65_536


def array_from_json(
    data: Sequence[Any],
    datatype: str,
    shape: Sequence[int],
    *,
    base64_strings: bool = False,
    where: str = "data",
) -> Array:
    """The array that a JSON ``data`` list (flat or nested, row-major) holds."""
    dtype = numpy_dtype(datatype, where=where)
    count = element_count(shape, where=where)
    if datatype == "BYTES":
        items = _bytes_items(data, base64_strings=base64_strings, where=where)
        _check_count(len(items), shape, count, where)
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    try:
        values = np.asarray(data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(
            f"{where}: not a regular nested list of {datatype} values: {exc}"
        ) from exc
    _check_count(values.size, shape, count, where)
    if values.size == 0:
        return np.zeros(shape, dtype=dtype)
    kind = values.dtype.kind
    if dtype.kind in "iuf" and (kind == "O" or (kind == "f" and dtype.kind in "iu")):
        # numpy turns integers beyond int64 (valid UINT64 data) into float64 or object
        # arrays, so only the original Python values tell integers from fractions.
        values = _exact_numbers(np.asarray(data, dtype=object), dtype, datatype, where)
    elif dtype.kind in "iuf" and kind in "iuf" and _has_booleans(data, values):
        raise InvalidInput(f"{where}: {datatype} takes {_EXPECTED[dtype.kind]}, got booleans")
    if values.dtype.kind not in _ACCEPTED_KINDS[dtype.kind]:
        raise InvalidInput(
            f"{where}: {datatype} takes {_EXPECTED[dtype.kind]}, got {_describe(values)}"
        )
    if dtype.kind in "iu":
        _check_range(values, dtype, datatype, where)
    # Floats out of a narrow type's range become infinity, as an IEEE cast does.
    with np.errstate(over="ignore"):
        return values.astype(dtype).reshape(shape)


def array_to_json(array: Array, datatype: str) -> tuple[list[Any], bool]:
    """The flat row-major ``data`` list for an array, and whether it is base64 BYTES."""
    if datatype != "BYTES":
        flat = array.ravel()
        values: list[Any] = []
        # In slices: one tolist() of millions of elements holds the GIL throughout, so a
        # server converting in a worker thread would still stall its event loop.
        for start in range(0, flat.size, _SLICE):
            values += flat[start : start + _SLICE].tolist()
        return values, False
    items = bytes_elements(array, where="BYTES tensor")
    try:
        return [item.decode("utf-8") for item in items], False
    except UnicodeDecodeError:
        return [base64.b64encode(item).decode("ascii") for item in items], True


def _check_count(size: int, shape: Sequence[int], count: int, where: str) -> None:
    if size != count:
        raise InvalidInput(f"{where}: has {size} elements but shape {list(shape)} needs {count}")


def _check_range(values: Array, dtype: np.dtype[Any], datatype: str, where: str) -> None:
    _check_bounds(int(values.min()), int(values.max()), dtype, datatype, where)


def _check_bounds(low: int, high: int, dtype: np.dtype[Any], datatype: str, where: str) -> None:
    info = np.iinfo(dtype)
    if low < info.min or high > info.max:
        bad = low if low < info.min else high
        raise InvalidInput(f"{where}: value {bad} is out of range for {datatype}")


def _exact_numbers(values: Array, dtype: np.dtype[Any], datatype: str, where: str) -> Array:
    items = values.ravel().tolist()
    allowed: tuple[type, ...] = (int,) if dtype.kind in "iu" else (int, float)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, allowed):
            got = "floating-point numbers" if isinstance(item, float) else type(item).__name__
            raise InvalidInput(f"{where}: {datatype} takes {_EXPECTED[dtype.kind]}, got {got}")
    if dtype.kind == "f":
        try:
            return np.array(items, dtype=np.float64).reshape(values.shape)
        except OverflowError:  # an integer beyond any float, not a number this type holds
            bits = max(abs(item).bit_length() for item in items if isinstance(item, int))
            raise InvalidInput(
                f"{where}: an integer of {bits} bits is out of range for {datatype}"
            ) from None
    low, high = min(items), max(items)
    _check_bounds(low, high, dtype, datatype, where)
    return np.array(items, dtype=dtype).reshape(values.shape)


def _has_booleans(data: Sequence[Any], values: Array) -> bool:
    """Whether ``true``/``false`` hid among the numbers: numpy reads them as 1 and 0, so
    only a tensor holding a 0 or a 1 needs its elements' types looked at."""
    if not ((values == 0) | (values == 1)).any():
        return False
    items = data if values.ndim == 1 else np.asarray(data, dtype=object).ravel().tolist()
    return bool in set(map(type, items))


def _describe(values: Array) -> str:
    kind = values.dtype.kind
    if kind == "b":
        return "booleans"
    if kind in "iu":
        return "integers"
    if kind == "f":
        return "floating-point numbers"
    if kind in "US":
        return "strings"
    return "values of mixed or unsupported types (or integers beyond 64 bits)"


def _bytes_items(data: Sequence[Any], *, base64_strings: bool, where: str) -> list[bytes]:
    items: list[bytes] = []
    for text in _leaves(data):
        if not isinstance(text, str):
            raise InvalidInput(
                f"{where}: BYTES elements must be strings, got {type(text).__name__}"
            )
        if base64_strings:
            try:
                items.append(base64.b64decode(text, validate=True))
            except binascii.Error as exc:
                raise InvalidInput(
                    f"{where}: element {len(items)} is not valid base64 "
                    f"(the tensor has content_type base64): {exc}"
                ) from exc
        else:
            items.append(text.encode("utf-8"))
    return items


def _leaves(data: Sequence[Any]) -> Iterator[Any]:
    # Iterative walk: a deeply nested body must not hit Python's recursion limit.
    stack: list[Iterator[Any]] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()
