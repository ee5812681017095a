"""Fixtures for engine tests against the real broker."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from streamdag.engine import PipelineRunner
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
def running() -> Callable[..., Iterator[PipelineRunner]]:
    """``with running(spec, bootstrap):`` runs the pipeline's workers in this process."""

    @contextmanager
    def run(
        spec: PipelineSpec | Path, bootstrap: str, **kwargs: object
    ) -> Iterator[PipelineRunner]:
        if isinstance(spec, Path):
            spec = load_spec(spec)
        runner = PipelineRunner(spec, bootstrap, **kwargs)  # type: ignore[arg-type]
        errors: list[BaseException] = []

        def target() -> None:
            try:
                runner.run()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        try:
            yield runner
        finally:
            runner.stop()
            thread.join(60)
        assert not thread.is_alive(), "runner did not stop"
        assert not errors, errors

    return run  # type: ignore[return-value]
