"""One tensor <-> its OIP wire forms: raw bytes, or typed ``InferTensorContents``.

``where`` arguments are labels such as ``input 'x'`` that start every error message, so
a caller learns which tensor is wrong and why. Numeric data never pass through a Python
loop; BYTES elements do, since each one is a separate object.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from streamdag.errors import InvalidInput
from streamdag.protocol._generated.inference_pb2 import InferTensorContents
from streamdag.protocol.datatypes import Array, datatype_of, element_count, numpy_dtype, wire_dtype

__all__ = [
    "as_tensor",
    "bytes_elements",
    "decode_contents",
    "decode_raw",
    "encode_contents",
    "encode_raw",
]

# Which typed field carries each datatype, and the dtype of that field's elements.
_FIELDS: Final[dict[str, tuple[str, np.dtype[Any]]]] = {
    "BOOL": ("bool_contents", np.dtype(np.bool_)),
    "UINT8": ("uint_contents", np.dtype(np.uint32)),
    "UINT16": ("uint_contents", np.dtype(np.uint32)),
    "UINT32": ("uint_contents", np.dtype(np.uint32)),
    "UINT64": ("uint64_contents", np.dtype(np.uint64)),
    "INT8": ("int_contents", np.dtype(np.int32)),
    "INT16": ("int_contents", np.dtype(np.int32)),
    "INT32": ("int_contents", np.dtype(np.int32)),
    "INT64": ("int64_contents", np.dtype(np.int64)),
    "FP32": ("fp32_contents", np.dtype(np.float32)),
    "FP64": ("fp64_contents", np.dtype(np.float64)),
    "BYTES": ("bytes_contents", np.dtype(object)),
}

_LENGTH: Final = struct.Struct("<I")


def as_tensor(value: object, *, where: str) -> tuple[Array, str]:
    """The value as an ndarray together with its OIP datatype."""
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    return array, datatype_of(array, where=where)


def bytes_elements(array: Array, *, where: str) -> list[bytes]:
    """The elements of a BYTES tensor, row-major; ``str`` elements become UTF-8."""
    out: list[bytes] = []
    for i, item in enumerate(array.ravel().tolist()):
        if isinstance(item, bytes):
            out.append(item)
        elif isinstance(item, str):
            out.append(item.encode("utf-8"))
        elif isinstance(item, bytearray | memoryview):
            out.append(bytes(item))
        else:
            index = tuple(int(k) for k in np.unravel_index(i, array.shape))
            raise InvalidInput(
                f"{where}: BYTES element {list(index)} is {type(item).__name__}, expected bytes"
            )
    return out


def _object_array(items: Sequence[bytes], shape: Sequence[int]) -> Array:
    array = np.empty(len(items), dtype=object)
    # Slice assignment keeps each bytes object whole; np.array(items) would build an S dtype.
    array[:] = items
    return array.reshape(shape)


def encode_raw(array: Array, datatype: str, *, where: str) -> bytes:
    """Flattened row-major little-endian bytes; BYTES as 4-byte length + data each."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in bytes_elements(array, where=where):
            parts.append(_LENGTH.pack(len(item)))
            parts.append(item)
        return b"".join(parts)
    return array.astype(wire_dtype(datatype), copy=False).tobytes(order="C")


def decode_raw(data: bytes, datatype: str, shape: Sequence[int], *, where: str) -> Array:
    """A writable native-order array from raw contents, checked against the shape."""
    count = element_count(shape, where=where)
    if datatype == "BYTES":
        return _object_array(_split_bytes(data, count, where=where), shape)
    wire = wire_dtype(datatype, where=where)
    expected = count * wire.itemsize
    if len(data) != expected:
        raise InvalidInput(
            f"{where}: raw contents hold {len(data)} bytes but shape {list(shape)} "
            f"of {datatype} needs {expected}"
        )
    if datatype == "BOOL":
        # Any non-zero byte is true; viewing it as bool would keep odd values like 2.
        flags: Array = np.frombuffer(data, dtype=np.uint8) != 0
        return flags.reshape(shape)
    # astype copies, so the array owns writable memory and is in native byte order.
    return np.frombuffer(data, dtype=wire).astype(numpy_dtype(datatype)).reshape(shape)


def _split_bytes(data: bytes, count: int, *, where: str) -> list[bytes]:
    items: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if len(items) == count:
            raise InvalidInput(
                f"{where}: raw BYTES contents have {end - pos} bytes left after "
                f"the {count} elements the shape holds"
            )
        if pos + 4 > end:
            raise InvalidInput(
                f"{where}: raw BYTES contents end inside the length of element {len(items)}"
            )
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += 4
        if pos + length > end:
            raise InvalidInput(
                f"{where}: raw BYTES element {len(items)} claims {length} bytes "
                f"but only {end - pos} remain"
            )
        items.append(data[pos : pos + length])
        pos += length
    if len(items) != count:
        raise InvalidInput(
            f"{where}: raw BYTES contents hold {len(items)} elements but the shape needs {count}"
        )
    return items


def _field_for(datatype: str, *, where: str) -> tuple[str, np.dtype[Any]]:
    numpy_dtype(datatype, where=where)  # an unknown datatype gets its own message
    try:
        return _FIELDS[datatype]
    except KeyError:
        raise InvalidInput(
            f"{where}: FP16 has no typed contents field in OIP; send it as raw contents"
        ) from None


def encode_contents(
    array: Array, datatype: str, contents: InferTensorContents, *, where: str
) -> None:
    """Fill the typed field that ``datatype`` uses; FP16 has none and is refused."""
    field, _ = _field_for(datatype, where=where)
    values = bytes_elements(array, where=where) if datatype == "BYTES" else array.ravel().tolist()
    getattr(contents, field).extend(values)


def decode_contents(
    contents: InferTensorContents, datatype: str, shape: Sequence[int], *, where: str
) -> Array:
    """A native-order array from typed contents, checked against datatype and shape."""
    field, carrier = _field_for(datatype, where=where)
    count = element_count(shape, where=where)
    stray = [f.name for f, _ in contents.ListFields() if f.name != field]
    if stray:
        raise InvalidInput(f"{where}: datatype {datatype} takes {field}, got {', '.join(stray)}")
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"{where}: {field} has {len(values)} elements but shape {list(shape)} needs {count}"
        )
    if datatype == "BYTES":
        return _object_array(list(values), shape)
    array = np.fromiter(values, dtype=carrier, count=count)
    target = numpy_dtype(datatype)
    if target != carrier and array.size:
        # int_contents/uint_contents are 32-bit on the wire; narrower types must fit.
        info = np.iinfo(target)
        low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            raise InvalidInput(
                f"{where}: {field} value {low if low < info.min else high} "
                f"is out of range for {datatype}"
            )
    return array.astype(target, copy=False).reshape(shape)
