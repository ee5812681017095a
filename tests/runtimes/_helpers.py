"""Data and small builders shared by the runtime tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

TEXTS = [
    b"chest pain and shortness of breath",
    b"fracture of the left wrist after a fall",
    b"crushing chest pain radiating to the arm",
    b"broken ankle from a skiing fall",
    b"pain in the chest at rest",
    b"wrist fracture, cast applied",
]
LABELS = ["cardiac", "trauma", "cardiac", "trauma", "cardiac", "trauma"]


def objects(*items: object) -> NDArray[Any]:
    """A 1-D object array holding exactly these items (a BYTES tensor when they are bytes)."""
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array
