"""The medical-records pipeline spec: at least eight steps, a fan-out, an inner join, and
triggers that route each note to one branch."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdag.demo import EXAMPLE_DIR, DemoOptions, MedicalRecords, example, run_demo
from streamdag.demo.example import example_dir
from streamdag.demo.run import worker_groups
from streamdag.errors import ConfigError
from streamdag.pipeline import build_graph, compile_plan, load_spec
from streamdag.pipeline.topics import OUTPUT_JOIN


def test_the_spec_has_fan_out_an_inner_join_and_triggers() -> None:
    spec = load_spec(EXAMPLE_DIR / "pipeline.yaml")
    graph = build_graph(spec)
    assert len(spec.steps) >= 8
    assert len(graph.downstream("normalize")) >= 3  # fan-out
    coder = graph.nodes["coder"]
    assert coder.is_join and coder.join_mode == "inner" and len(coder.sources) == 4
    triggered = {s.name: [str(r) for r in s.trigger_refs] for s in spec.steps if s.when}
    assert triggered == {
        "accept": ["gate.outputs.accepted"],
        "review": ["gate.outputs.needs_review"],
    }
    assert spec.output.steps == ["risk", "accept", "review"] and spec.output.join == "outer"
    onnx = sorted(n for n, m in spec.models.items() if m.runtime == "onnx")
    assert onnx == ["assertion", "entities", "sections"]


def test_the_worker_processes_cover_every_step_once() -> None:
    spec = load_spec(EXAMPLE_DIR / "pipeline.yaml")
    groups = worker_groups(compile_plan(spec))
    assert groups[0] == ["sections", "entities", "assertion"]
    steps = [s for g in groups for s in g]
    assert sorted(steps) == sorted([*(s.name for s in spec.steps), OUTPUT_JOIN])


def test_the_quickstart_pipeline_of_the_readme_still_loads() -> None:
    spec = load_spec(EXAMPLE_DIR.parent / "quickstart.yaml")
    assert [s.name for s in spec.steps] == ["normalize", "features", "urgency"]


def test_a_missing_example_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="example is missing"):
        run_demo(DemoOptions(example=tmp_path / "nowhere"))


def test_a_checkout_runs_the_example_in_place_an_install_from_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert example_dir(tmp_path) == EXAMPLE_DIR  # this checkout
    assert not (tmp_path / "demo").exists()
    monkeypatch.setattr(example, "_CHECKOUT_LINK", tmp_path / "no-checkout")
    (EXAMPLE_DIR / "models").mkdir(exist_ok=True)  # what a trained checkout has
    copy = example_dir(tmp_path / "state")
    assert copy == tmp_path / "state" / "demo" / "medical_records"
    assert (copy / "pipeline.yaml").read_bytes() == (EXAMPLE_DIR / "pipeline.yaml").read_bytes()
    assert (copy / "medrec" / "steps.py").is_file()
    assert not (copy / "models").exists() and not (copy / "medrec" / "__pycache__").exists()
    MedicalRecords(copy).documents(1)  # the copy's own code runs
