"""Fixtures for engine tests against the real broker."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka_support import run_pipeline

from streamdag.pipeline import PipelineSpec, load_spec

HERE = Path(__file__).parent
HANDLERS = [HERE / "linear_models.py", HERE / "dag_models.py"]


@pytest.fixture
def pipeline_spec(tmp_path: Path, unique_name: Callable[[str], str]) -> Callable[..., Path]:
    """Write a spec (``{name}`` is filled with a fresh pipeline name) beside the handlers."""

    def make(text: str) -> Path:
        for module in HANDLERS:
            shutil.copy(module, tmp_path / module.name)
        path = tmp_path / "pipeline.yaml"
        path.write_text(text.replace("{name}", unique_name("p")))
        return path

    return make


@pytest.fixture
def running() -> Callable[..., Any]:
    """``with running(spec, bootstrap):`` runs the pipeline's workers in this process."""

    def run(spec: PipelineSpec | Path, bootstrap: str, **options: Any) -> Any:
        return run_pipeline(
            load_spec(spec) if isinstance(spec, Path) else spec, bootstrap, **options
        )

    return run
