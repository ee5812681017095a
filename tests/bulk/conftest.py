"""Fixtures of the bulk tests: a spec beside the test models, a small pipeline."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).parent

DOUBLE = """
name: "{name}"
partitions: 4
models:
  double:
    runtime: python
    handler: "bulk_models:double"
    inputs: [{name: x, datatype: INT64, shape: [-1, 1]}]
    outputs: [y]
    batch: {max_size: 256, max_wait_ms: 5}
steps:
  - {name: double, model: double}
retry: {max_attempts: 1, backoff_ms: 1}
"""


@pytest.fixture
def pipeline_spec(tmp_path: Path, unique_name: Callable[[str], str]) -> Callable[..., Path]:
    """Write a spec (``{name}`` is filled with a fresh pipeline name) beside the models."""

    def make(text: str = DOUBLE) -> Path:
        shutil.copy(HERE / "bulk_models.py", tmp_path / "bulk_models.py")
        path = tmp_path / "pipeline.yaml"
        path.write_text(text.replace("{name}", unique_name("p")))
        return path

    return make
