"""Models named by the serving tests' specs; copied beside each spec under a fresh name.

Each class records the rows of every ``predict`` call in its own ``CALLS`` list, so a test
can count how many calls a burst of requests became.
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from streamdag.runtimes import Model, ModelMetadata, TensorSpec

Arrays = dict[str, NDArray[Any]]


class Scale(Model):
    """y = 2 * x for FP32 rows of three; a row starting with -1 fails the whole call."""

    CALLS: ClassVar[list[int]] = []

    def load(self) -> None:
        pass

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            "scale",
            "python",
            inputs=[TensorSpec("x", "FP32", [-1, 3])],
            outputs=[TensorSpec("y", "FP32", [-1, 3])],
        )

    def predict(self, inputs: Arrays) -> Arrays:
        x = inputs["x"]
        type(self).CALLS.append(len(x))
        if (x[:, 0] == -1).any():
            raise ValueError("rows starting with -1 are poison")
        return {"y": x * 2}


class BatchedScale(Scale):
    """Scale with its own call log, declared with a long batching window."""

    CALLS: ClassVar[list[int]] = []


class Upper(Model):
    """BYTES text -> upper-cased BYTES text and its length (INT32)."""

    def load(self) -> None:
        pass

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            "upper",
            "python",
            inputs=[TensorSpec("text", "BYTES", [-1])],
            outputs=[TensorSpec("upper", "BYTES", [-1]), TensorSpec("length", "INT32", [-1])],
        )

    def predict(self, inputs: Arrays) -> Arrays:
        text = inputs["text"]
        upper = np.empty(len(text), dtype=object)
        upper[:] = [item.upper() for item in text]
        length = np.array([len(item) for item in text], dtype=np.int32)
        return {"upper": upper, "length": length}


class Slow(Model):
    """Sleeps ``x[0]`` seconds, then echoes x; ``STARTED`` is set when a call begins."""

    STARTED: ClassVar[threading.Event] = threading.Event()

    def load(self) -> None:
        pass

    def predict(self, inputs: Arrays) -> Arrays:
        type(self).STARTED.set()
        time.sleep(float(inputs["x"].ravel()[0]))
        return {"x": inputs["x"]}


def echo(inputs: Arrays) -> Arrays:
    """Returns its inputs: a model that declares nothing."""
    return dict(inputs)


def boom(inputs: Arrays) -> Arrays:
    raise RuntimeError("the model fell over")


class Gate(Model):
    """load() blocks until ``OPEN`` is set: a model that takes its time to load."""

    OPEN: ClassVar[threading.Event] = threading.Event()

    def load(self) -> None:
        if not type(self).OPEN.wait(30):
            raise TimeoutError("the gate never opened")

    def predict(self, inputs: Arrays) -> Arrays:
        return dict(inputs)
