"""Sample tensors shared by the protocol tests, as factory fixtures."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from streamdag.protocol import Array, numpy_dtype

SHAPES = [(3,), (2, 3), (), (0,), (2, 0, 3), (1, 2, 1, 2)]


def _sample(datatype: str, shape: tuple[int, ...]) -> Array:
    """A tensor of ``datatype`` whose values include the type's extremes where they fit."""
    count = math.prod(shape)
    if datatype == "BYTES":
        flat = np.empty(count, dtype=object)
        flat[:] = [("v" * (i % 4) + "é" * (i % 2)).encode() for i in range(count)]
        return flat.reshape(shape)
    if datatype == "BOOL":
        flags: Array = np.arange(count) % 3 == 0
        return flags.reshape(shape)
    dtype = numpy_dtype(datatype)
    if dtype.kind == "f":
        values = (np.arange(count) - 1.5) / 3
        if count >= 3:
            values[:3] = [np.inf, -0.0, 65504.0]
        return values.astype(dtype).reshape(shape)
    info = np.iinfo(dtype)
    flat = np.arange(count).astype(dtype)
    if count >= 2:
        flat[0], flat[-1] = info.max, info.min
    return flat.reshape(shape)


def _assert_same(expected: Array, actual: Array) -> None:
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if expected.dtype.kind == "O":
        assert actual.ravel().tolist() == expected.ravel().tolist()
    else:
        assert np.array_equal(actual, expected, equal_nan=expected.dtype.kind == "f")


@pytest.fixture(params=SHAPES, ids=lambda s: "x".join(map(str, s)) or "scalar")
def shape(request: pytest.FixtureRequest) -> tuple[int, ...]:
    value: tuple[int, ...] = request.param
    return value


@pytest.fixture
def sample() -> Callable[[str, tuple[int, ...]], Array]:
    return _sample


@pytest.fixture
def assert_same() -> Callable[[Array, Array], None]:
    return _assert_same
