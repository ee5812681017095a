"""A lone request is never held back by a worker's idle wait or its commit interval: each
step commits what it delivered before it waits for more records, so the next step (which
reads only committed records under exactly_once) sees the result at once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer
from kafka_support import send_requests

from streamdag.engine import delivery, worker
from streamdag.pipeline import load_spec

THREE_STEPS = """
name: "{name}"
guarantee: GUARANTEE
partitions: 1
models:
  scale: {runtime: python, handler: "linear_models:scale", outputs: [y]}
  shift: {runtime: python, handler: "linear_models:shift", outputs: [w]}
  total: {runtime: python, handler: "linear_models:total", outputs: [sum]}
steps:
  - {name: double, model: scale}
  - name: plus-one
    model: shift
    inputs: [double.outputs.y]
    tensor_map: {double.outputs.y: v}
  - {name: add-up, model: total, inputs: [plus-one.outputs]}
"""

# Long enough that a hop waiting for it could not go unnoticed on a loaded machine.
IDLE_WAIT_S = 4.0


def _answer_s(bootstrap: str, pipeline: str, reader: Consumer, rid: str, timeout: float) -> float:
    """Send one request and return the seconds until its result is readable."""
    started = time.monotonic()
    send_requests(bootstrap, pipeline, [(rid, {"x": np.arange(4, dtype=np.int64)[None, :]})])
    while time.monotonic() - started < timeout:
        msg = reader.poll(0.05)
        if msg is not None and msg.error() is None and msg.key() == rid.encode():
            return time.monotonic() - started
    raise AssertionError(f"no result for {rid} within {timeout} s")


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_a_lone_request_is_not_held_back_by_the_idle_wait(
    guarantee: str,
    bootstrap: str,
    pipeline_spec: Callable[[str], Path],
    running: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "_IDLE_WAIT_S", IDLE_WAIT_S)
    # Under load the interval commits; a lone request must not need it.
    monkeypatch.setattr(delivery, "COMMIT_INTERVAL_S", 60.0)
    spec = load_spec(pipeline_spec(THREE_STEPS.replace("GUARANTEE", guarantee)))
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    reader.subscribe([f"streamdag.{spec.name}.outputs"])
    try:
        with running(spec, bootstrap):
            # The first requests wait for the groups to form; after them the steps know
            # their model is fast and run it on their own thread.
            for i in range(3):
                _answer_s(bootstrap, spec.name, reader, f"warm-{i}", timeout=90)
            times = [
                _answer_s(bootstrap, spec.name, reader, f"lone-{i}", timeout=60) for i in range(5)
            ]
    finally:
        reader.close()
    # Three steps, each of which would add a whole idle wait if it held its commit.
    assert max(times) < IDLE_WAIT_S, times
