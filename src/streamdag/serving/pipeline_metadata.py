"""What a pipeline takes and gives, as OIP model metadata shows it, and its description
(``GET /v2/pipelines/<p>``): steps, consumer groups and topics.

Both are read from the compiled ``PipelinePlan`` and the declarations of the models the
server loaded; nothing runs. A pipeline's inputs are the tensors its first steps (those
that read ``pipeline.inputs``) declare, under the names the request gives them (a step's
``tensor_map`` undone); its outputs are those its output steps declare. Under an inner
output join every output step answers, so a name that several of them give comes back as
``<step>.<name>`` (as the assembler names it); under ``outer`` and ``any`` it is listed
once under its own name, as it comes when one of those steps answers. A tensor declared
by name alone, without a datatype, is not listed: OIP metadata needs one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from streamdag.pipeline import PipelinePlan
from streamdag.runtimes import TensorSpec
from streamdag.serving.checks import Metadata

__all__ = ["pipeline_description", "pipeline_inputs", "pipeline_outputs"]

_INPUT_PREFIX = "pipeline.inputs."


def pipeline_inputs(plan: PipelinePlan, metadata: Metadata) -> list[TensorSpec]:
    """The request tensors the pipeline's first steps declare, each once."""
    found: dict[str, TensorSpec] = {}
    for step in plan.steps:
        refs = [r for r in step.refs if r.is_pipeline]
        meta = metadata(step.model or "")
        if not refs or meta is None:
            continue
        # tensor_map renames a request tensor on its way into the step: undo it.
        request_name = {
            model_name: key.removeprefix(_INPUT_PREFIX)
            for key, model_name in step.tensor_map.items()
            if key.startswith(_INPUT_PREFIX)
        }
        named = {r.tensor for r in refs if r.tensor is not None}
        whole = any(r.tensor is None for r in refs)
        for spec in meta.inputs:
            name = request_name.get(spec.name, spec.name)
            if whole or name in named:
                found.setdefault(name, TensorSpec(name, spec.datatype, list(spec.shape)))
    return list(found.values())


def pipeline_outputs(plan: PipelinePlan, metadata: Metadata) -> list[TensorSpec]:
    """The tensors of the pipeline's answer that its output steps declare."""
    by_step: dict[str, list[TensorSpec]] = {}
    for step in plan.output_steps:
        meta = metadata(plan.node(step).model or "")
        by_step[step] = list(meta.outputs) if meta is not None else []
    assembler = plan.assembler
    if assembler is None:
        return [spec for specs in by_step.values() for spec in specs]
    selected = {ref.source: ref.tensor for ref in assembler.refs if ref.tensor is not None}
    for step, tensor in selected.items():
        by_step[step] = [spec for spec in by_step.get(step, []) if spec.name == tensor]
    seen = Counter(spec.name for specs in by_step.values() for spec in specs)
    apart = plan.spec.output.join == "inner"
    found: dict[str, TensorSpec] = {}
    for step, specs in by_step.items():
        for spec in specs:
            name = f"{step}.{spec.name}" if apart and seen[spec.name] > 1 else spec.name
            found.setdefault(name, TensorSpec(name, spec.datatype, list(spec.shape)))
    return list(found.values())


def pipeline_description(plan: PipelinePlan) -> dict[str, Any]:
    """The pipeline's steps (model, consumer group, what each reads, where it writes) and
    topics, as JSON."""
    steps = [
        {
            "name": node.name,
            "model": node.model,
            "group": node.group,
            "inputs": [str(ref) for ref in node.refs],
            "when": [str(ref) for ref in node.triggers],
            "tensor_map": dict(node.tensor_map),
            "join": node.join.value if node.join is not None else None,
            "outputs_topic": node.outputs_topic,
        }
        for node in plan.steps
    ]
    assembler = plan.assembler
    return {
        "steps": steps,
        "output": {
            "steps": plan.output_steps,
            "join": plan.spec.output.join if assembler is not None else None,
            "group": assembler.group if assembler is not None else None,
        },
        "topics": {
            "inputs": plan.inputs_topic,
            "outputs": plan.outputs_topic,
            "errors": plan.errors_topic,
            "all": sorted(topic.name for topic in plan.topics()),
        },
        "partitions": plan.partitions,
        "guarantee": plan.guarantee,
    }
