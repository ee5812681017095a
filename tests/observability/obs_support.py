"""Helpers of the observability tests: the fan-out/join pipeline they inspect, running it
in this process, sending requests as streamdag's own producers do, and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from confluent_kafka import Message, Producer

from streamdag.kafka import producer_config
from streamdag.pipeline import inputs_topic
from streamdag.protocol import encode_request

HERE = Path(__file__).parent
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

FAN = """
name: "{name}"
partitions: 3
models:
  split: {{runtime: python, handler: "obs_models:split", outputs: [a, b]}}
  left: {{runtime: python, handler: "obs_models:left", outputs: [l]}}
  right: {{runtime: python, handler: "obs_models:{right}", outputs: [r]}}
  combine: {{runtime: python, handler: "obs_models:combine", outputs: [total, parts]}}
retry: {{max_attempts: 2, backoff_ms: 10}}
steps:
  - {{name: split, model: split}}
  - {{name: left, model: left, inputs: [split.outputs.a]}}
  - {{name: right, model: right, inputs: [split.outputs.b]}}
  - name: both
    model: combine
    inputs: [left.outputs, right.outputs]
    join: inner
    join_window_ms: 20000
"""


def write_pipeline(folder: Path, name: str, *, right: str) -> Path:
    """The fan-out/join spec with handler ``right`` for the right branch, beside its models
    (a `streamdag` subprocess finds them there)."""
    shutil.copy(HERE / "obs_models.py", folder / "obs_models.py")
    path = folder / "pipeline.yaml"
    path.write_text(FAN.format(name=name, right=right))
    return path


def request_value(rid: str, x: int, *, as_json: bool = False) -> bytes:
    if as_json:
        body = {
            "id": rid,
            "inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [x]}],
        }
        return json.dumps(body).encode()
    return encode_request("", {"x": np.array([x], dtype=np.int64)}, id=rid).SerializeToString()


def send(
    bootstrap: str,
    pipeline: str,
    requests: Sequence[tuple[str, bytes, list[tuple[str, bytes]]]],
    *,
    murmur2: bool = True,
) -> dict[str, int]:
    """Produce (request id, value, headers) to the inputs topic, keyed by request id, and
    return where each landed: murmur2-partitioned like streamdag's own producers, or with
    ``murmur2=False`` like a client left at librdkafka's default (``consistent_random``)."""
    config = (
        producer_config(bootstrap, client_id="obs-test")
        if murmur2
        else {"bootstrap.servers": bootstrap}
    )
    producer = Producer(config)
    landed: dict[str, int] = {}

    def delivered(err: object, msg: Message) -> None:
        assert err is None, err
        landed[(msg.key() or b"").decode()] = msg.partition() or 0

    for rid, value, headers in requests:
        producer.produce(
            inputs_topic(pipeline),
            value,
            rid.encode(),
            headers=list(headers),
            on_delivery=delivered,
        )
    assert producer.flush(30) == 0
    return landed


def streamdag(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """``streamdag ARGS`` as a subprocess; ``.communicate()`` it."""
    return subprocess.Popen(
        [sys.executable, "-m", "streamdag.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
