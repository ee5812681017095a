"""`streamdag validate`: every problem `run` would meet, found without Kafka, one line
each; and the top-level help's command summaries, whole."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from streamdag.cli.main import main

MODELS = """
from streamdag.runtimes import Model


def good(inputs):
    return {"y": inputs["x"]}


class Scaler(Model):
    def __init__(self, factor: float) -> None:
        self.factor = factor

    def load(self) -> None:
        pass

    def predict(self, inputs):
        return {"y": inputs["x"] * self.factor}
"""
SPEC = """
name: {name}
models:
  good: {{runtime: python, handler: "{module}:good", outputs: [y]}}
  other: {{runtime: python, handler: "{module}:{handler}", outputs: [y]}}
  scaler: {{runtime: custom, implementation: "{module}:Scaler", parameters: {{{parameter}: 2}}}}
steps:
  - {{name: a, model: good}}
  - {{name: b, model: other, inputs: [a.outputs.y]}}
  - {{name: c, model: scaler, inputs: [a.outputs.y]}}
output:
  steps: [b, c]
  join: outer
"""


def write(folder: Path, *, handler: str, parameter: str) -> Path:
    # A module name of its own: the spec's folder goes on sys.path, and modules are cached.
    module = f"validate_models_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(MODELS)
    path = folder / f"{handler}.yaml"
    path.write_text(SPEC.format(name=handler, module=module, handler=handler, parameter=parameter))
    return path


def test_every_problem_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, handler="missing", parameter="factr")
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"error: {path}: model other: ")
    assert "has no attribute 'missing'" in lines[0]
    assert lines[1].startswith(f"error: {path}: model scaler: parameters do not fit")
    assert "'factor'" in lines[1]


def test_a_missing_model_file_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\nmodels:\n  chart: {runtime: onnx, uri: models/chart.onnx}\n"
        "steps:\n  - {name: a, model: chart}\n"
    )
    assert main(["validate", str(path)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith("not found") and "models/chart.onnx" in line


def test_a_spec_problem_lists_every_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\nmodels:\n  m: {runtime: python, handler: 'nowhere:f'}\n"
        "steps:\n  - {name: a, model: m}\n  - {name: b, model: nope}\n"
    )
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2, lines
    assert all(line.startswith(f"error: {path}: ") for line in lines)


def test_a_valid_spec_loads_its_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, handler="good", parameter="factor")
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert (
        out == f"{path}: pipeline good is valid: 3 models loaded (good, other, scaler), 3 steps\n"
    )


def test_the_help_shows_whole_summaries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    commands = out[out.index("Commands:") :]
    assert "..." not in commands
    assert "Follow one request through every topic of a pipeline, in order of" in commands
    assert "time, or show the last records of one of its topics." in commands
