"""BYTES tensors <-> the ``str`` arrays that onnxruntime and scikit-learn text models want."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamdag.errors import InvalidInput


def decode_utf8(where: str, name: str, array: NDArray[Any]) -> NDArray[Any]:
    """An object array of ``str`` from a BYTES tensor; undecodable rows are ``InvalidInput``."""
    try:
        items = [item.decode("utf-8") for item in array.flat]
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{where}: input {name!r}: BYTES element is not valid UTF-8 text ({exc.reason})"
        ) from exc
    return _object_array(items, array.shape)


def encode_utf8(array: NDArray[Any]) -> NDArray[Any]:
    """A BYTES tensor from an array of ``str`` (numpy ``<U`` or object); others pass as is."""
    if array.dtype.kind == "U" or (
        array.dtype.kind == "O" and any(isinstance(item, str) for item in array.flat)
    ):
        items = [item.encode("utf-8") if isinstance(item, str) else item for item in array.flat]
        return _object_array(items, array.shape)
    return array


def _object_array(items: list[Any], shape: tuple[int, ...]) -> NDArray[Any]:
    # np.array(items, dtype=object) would build nested arrays from sequences; filling an
    # empty object array keeps exactly one Python object per element.
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)
