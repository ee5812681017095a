"""Pipeline spec loading: good specs load, every bad spec names its file, field and fault."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from streamdag.errors import SpecError
from streamdag.pipeline import build_graph, derive_topics, load_spec

HANDLERS = Path(__file__).parent

FANOUT_JOIN = """
name: triage
version: 2
guarantee: exactly_once
partitions: 3
models:
  clean: {runtime: python, handler: "handlers:identity", outputs: [text]}
  classify: {runtime: python, handler: "handlers:identity", outputs: [label, has_dx]}
  ner: {runtime: python, handler: "handlers:identity"}
  icd: {runtime: python, handler: "handlers:identity"}
steps:
  - name: clean
    model: clean
  - name: sections
    model: classify
    inputs: [clean.outputs.text]
    tensor_map: {clean.outputs.text: text}
  - name: entities
    model: ner
    inputs: [clean.outputs.text]
  - name: coder
    model: icd
    inputs: [sections.outputs, entities.outputs]
    join: inner
    join_window_ms: 5000
    when: [sections.outputs.has_dx]
output:
  steps: [coder]
"""


@pytest.fixture
def spec_file(write_spec: Callable[[str], Path]) -> Callable[[str], Path]:
    def make(text: str) -> Path:
        path = write_spec(text)
        (path.parent / "handlers.py").write_text((HANDLERS / "handlers.py").read_text())
        return path

    return make


def test_fanout_join_spec_loads_and_derives_topics(spec_file: Callable[[str], Path]) -> None:
    spec = load_spec(spec_file(FANOUT_JOIN))
    graph = build_graph(spec)
    assert graph.order == ("clean", "sections", "entities", "coder")
    assert graph.nodes["coder"].is_join
    assert graph.downstream("clean") == ["sections", "entities"]
    topics = {t.name: t for t in derive_topics(spec)}
    assert list(topics) == [
        "streamdag.triage.inputs",
        "streamdag.triage.clean.outputs",
        "streamdag.triage.sections.outputs",
        "streamdag.triage.entities.outputs",
        # coder answers alone (no step reads it): its results go to the outputs topic only
        "streamdag.triage.coder.join-state",
        "streamdag.triage.errors",
        "streamdag.triage.outputs",
    ]
    assert all(t.partitions == 3 for t in topics.values())
    assert topics["streamdag.triage.coder.join-state"].compacted
    assert not topics["streamdag.triage.outputs"].compacted


def _bad(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


BAD_CASES = {
    "unknown model": (
        ("model: icd\n", "model: icdx\n"),
        "steps[3].model",
        "unknown model 'icdx'",
    ),
    "unknown step in inputs": (
        ("[sections.outputs, entities.outputs]", "[sections.outputs, entity.outputs]"),
        "steps[3].inputs[1]",
        "unknown step 'entity'",
    ),
    "unknown tensor in inputs": (
        (
            "inputs: [clean.outputs.text]\n    tensor_map",
            "inputs: [clean.outputs.txt]\n    tensor_map",
        ),
        "steps[1].inputs[0]",
        "no output tensor 'txt'",
    ),
    "unknown tensor of declared outputs": (
        (
            'clean: {runtime: python, handler: "handlers:identity", outputs: [text]}',
            'clean: {runtime: python, handler: "handlers:identity", '
            "outputs: [{name: txt, datatype: BYTES}]}",
        ),
        "steps[1].inputs[0]",
        "no output tensor 'text'",
    ),
    "malformed reference": (
        (
            "inputs: [clean.outputs.text]\n  - name: coder",
            "inputs: [clean-outputs]\n  - name: coder",
        ),
        "steps[2].inputs",
        "is not a reference",
    ),
    "cycle": (
        ("    model: clean\n", "    model: clean\n    inputs: [coder.outputs]\n"),
        "steps[0].inputs",
        "cycle: clean -> coder -> sections -> clean",
    ),
    "join with one input": (
        (
            "    inputs: [clean.outputs.text]\n  - name: coder",
            "    inputs: [clean.outputs.text]\n    join: outer\n  - name: coder",
        ),
        "steps[2].join",
        "at least two sources",
    ),
    "bad pipeline name": (
        ("name: triage", "name: Triage_1"),
        "name",
        "should match pattern",
    ),
    "bad step name": (
        ("- name: entities", "- name: Entities!"),
        "steps[2].name",
        "should match pattern",
    ),
    "reserved step name": (
        ("- name: entities", "- name: errors"),
        "steps[2].name",
        "reserved",
    ),
    "duplicate steps": (
        ("- name: entities", "- name: sections"),
        "steps[2].name",
        "duplicate step name 'sections'",
    ),
    "bad guarantee": (
        ("guarantee: exactly_once", "guarantee: exactly_twice"),
        "guarantee",
        "'exactly_once' or 'at_least_once'",
    ),
    "missing handler module": (
        (
            'ner: {runtime: python, handler: "handlers:identity"}',
            'ner: {runtime: python, handler: "no_such_module:identity"}',
        ),
        "models.ner.handler",
        "module 'no_such_module' not found",
    ),
    "unknown runtime": (
        ("ner: {runtime: python,", "ner: {runtime: pytorch,"),
        "models.ner.runtime",
        # Installed plug-ins follow the built-in runtimes.
        "unknown or missing runtime 'pytorch' (runtimes: 'python', 'onnx', 'sklearn', 'oip', "
        "'custom'",
    ),
    "unknown field": (
        ("join_window_ms: 5000", "join_windw_ms: 5000"),
        "steps[3].join_windw_ms",
        "unknown field",
    ),
    "unknown output step": (
        ("steps: [coder]", "steps: [coda]"),
        "output.steps[0]",
        "unknown step 'coda'",
    ),
    "trigger on unknown tensor": (
        ("when: [sections.outputs.has_dx]", "when: [sections.outputs.has_diagnosis]"),
        "steps[3].when[0]",
        "no output tensor 'has_diagnosis'",
    ),
    "tensor_map key not an input": (
        ("tensor_map: {clean.outputs.text: text}", "tensor_map: {entities.outputs.x: text}"),
        "steps[1].tensor_map.entities.outputs.x",
        "not among the step's inputs",
    ),
    "unreachable step": (
        ("steps: [coder]", "steps: [sections]"),
        "steps[2]",
        "the results of step 'entities' reach no output step",
    ),
    "join window shorter than an upstream outer join": (
        (
            "  - name: coder\n    model: icd\n    inputs: [sections.outputs, entities.outputs]",
            "  - name: both\n    model: icd\n    inputs: [sections.outputs, entities.outputs]\n"
            "    join: outer\n    join_window_ms: 8000\n"
            "  - name: coder\n    model: icd\n    inputs: [both.outputs, sections.outputs]",
        ),
        "steps[4].join_window_ms",
        "5000 ms is not longer than the window of the outer join 'both'",
    ),
    "zero partitions": (
        ("partitions: 3", "partitions: 0"),
        "partitions",
        "greater than or equal to 1",
    ),
}


@pytest.mark.parametrize("case", BAD_CASES, ids=list(BAD_CASES))
def test_bad_spec_names_file_field_and_fault(case: str, spec_file: Callable[[str], Path]) -> None:
    (old, new), field, fault = BAD_CASES[case]
    path = spec_file(_bad(FANOUT_JOIN, old, new))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    err = info.value
    assert err.file == str(path)
    assert err.field == field
    assert fault in err.problem
    assert str(err).startswith(f"{path}: {field}: ")


def test_invalid_yaml_names_the_line(write_spec: Callable[[str], Path]) -> None:
    path = write_spec("name: x\nsteps: [\n  - a\n")
    with pytest.raises(SpecError, match=r"invalid YAML: line \d+"):
        load_spec(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "absent.yaml")


def test_defaults(spec_file: Callable[[str], Path]) -> None:
    spec = load_spec(
        spec_file(
            'name: tiny\nmodels:\n  m: {runtime: python, handler: "handlers:identity"}\n'
            "steps:\n  - {name: only, model: m}\n"
        )
    )
    assert spec.guarantee == "exactly_once"
    assert spec.partitions == 6
    assert spec.steps[0].inputs == ["pipeline.inputs"]
    assert spec.output_steps == ["only"]
    assert spec.models["m"].batch.max_size >= 1
