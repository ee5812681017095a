"""Whole-graph validation of a pipeline spec and the DAG structure the engine runs.

Each problem is reported as (field path, what is wrong), so the loader can name the file,
the field and the fault in one line. The DAG holds every node that consumes records: the
steps, and the output assembler that joins the results of several output steps into one
final response.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum, StrEnum

from streamdag.pipeline.spec import PIPELINE_SOURCE, InputRef, PipelineSpec, StepSpec
from streamdag.runtimes.config import RuntimeSpec

__all__ = [
    "OUTPUT_JOIN",
    "Graph",
    "JoinMode",
    "Node",
    "NodeKind",
    "Problem",
    "build_graph",
    "check_spec",
    "stage_problem",
]

Problem = tuple[str, str]

# The name of the output assembler's node; "output" is reserved, so no step has it.
OUTPUT_JOIN = "output"


class NodeKind(Enum):
    STEP = "step"  # runs its model on what it reads, writes its own outputs topic
    ASSEMBLER = "assembler"  # no model: joins the output steps into the final response


class JoinMode(StrEnum):
    """When a join of several sources completes (docs/pipelines.md, "Join (fan-in)")."""

    INNER = "inner"
    OUTER = "outer"
    ANY = "any"


@dataclass(frozen=True)
class Node:
    """A step or the output assembler, with its upstream sources (``pipeline`` or step
    names, in first-use order) and how it joins them."""

    name: str
    kind: NodeKind
    sources: tuple[str, ...]
    join_mode: JoinMode  # how it would join: meaningful only when ``is_join``
    join_window_ms: int
    spec: StepSpec | None  # None for the assembler

    @property
    def is_join(self) -> bool:
        return len(self.sources) > 1

    @property
    def join(self) -> JoinMode | None:
        """The join mode, or None for a node with a single source."""
        return self.join_mode if self.is_join else None


@dataclass(frozen=True)
class Graph:
    spec: PipelineSpec
    nodes: dict[str, Node]  # the steps, then the assembler if there is one
    order: tuple[str, ...]  # topological: every node after all its sources

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps in topological order (the assembler left out)."""
        return tuple(n for n in self.order if self.nodes[n].kind is NodeKind.STEP)

    @property
    def assembler(self) -> Node | None:
        return self.nodes.get(OUTPUT_JOIN)

    def downstream(self, source: str) -> list[str]:
        return [n.name for n in self.nodes.values() if source in n.sources]

    def answers_alone(self, step: str) -> bool:
        """Whether ``step`` is the pipeline's only output step and no node reads it: its
        results then go to the pipeline's outputs topic only, not to a topic of its own."""
        return self.spec.output_steps == [step] and not self.downstream(step)


def declared_outputs(model: RuntimeSpec) -> set[str] | None:
    """Tensor names a model is known to produce, or None when only running it would tell."""
    names = model.output_names
    return set(names) if names is not None else None


def _sources(step: StepSpec) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for ref in [*step.input_refs, *step.trigger_refs]:
        seen.setdefault(ref.source, None)
    return tuple(seen)


def _check_ref(
    spec: PipelineSpec, field: str, ref: InputRef, steps: dict[str, StepSpec]
) -> Iterator[Problem]:
    if ref.is_pipeline:
        return
    if ref.source not in steps:
        known = ", ".join(sorted(steps)) or "none"
        yield field, f"unknown step {ref.source!r} (steps: {known})"
        return
    if ref.tensor is None:
        return
    model = spec.models.get(steps[ref.source].model)
    outputs = declared_outputs(model) if model is not None else None
    if outputs is not None and ref.tensor not in outputs:
        yield (
            field,
            (
                f"step {ref.source!r} has no output tensor {ref.tensor!r} "
                f"(it produces: {', '.join(sorted(outputs))})"
            ),
        )


def _check_step(
    spec: PipelineSpec, i: int, step: StepSpec, steps: dict[str, StepSpec]
) -> Iterator[Problem]:
    at = f"steps[{i}]"
    if step.model not in spec.models:
        known = ", ".join(sorted(spec.models))
        yield f"{at}.model", f"unknown model {step.model!r} (models: {known})"
    for j, ref in enumerate(step.input_refs):
        if ref.source == step.name:
            yield f"{at}.inputs[{j}]", f"step {step.name!r} cannot read its own outputs"
        else:
            yield from _check_ref(spec, f"{at}.inputs[{j}]", ref, steps)
    for j, ref in enumerate(step.trigger_refs):
        if ref.is_pipeline or ref.tensor is None:
            yield f"{at}.when[{j}]", "a trigger names one tensor of a step: <step>.outputs.<tensor>"
        else:
            yield from _check_ref(spec, f"{at}.when[{j}]", ref, steps)
    sources = _sources(step)
    if step.join is not None and len(sources) < 2:
        yield (
            f"{at}.join",
            (
                f"a join needs inputs from at least two sources; {step.name!r} reads only "
                f"{', '.join(sources)}"
            ),
        )
    refs = {str(r) for r in step.input_refs}
    for key in step.tensor_map:
        if key not in refs and not any(key.startswith(f"{r}.") for r in refs):
            yield (
                f"{at}.tensor_map.{key}",
                (f"{key!r} is not among the step's inputs ({', '.join(step.inputs)})"),
            )


def _find_cycle(nodes: dict[str, tuple[str, ...]]) -> list[str] | None:
    """A cycle among steps as a path a -> b -> a, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in nodes.get(n, ()):
            if m not in nodes:
                continue
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in nodes:
        if n not in state and (found := visit(n)):
            return found
    return None


def check_spec(spec: PipelineSpec) -> list[Problem]:
    """Every whole-graph problem of ``spec``; empty when it can run."""
    problems: list[Problem] = []
    steps: dict[str, StepSpec] = {}
    for i, step in enumerate(spec.steps):
        if step.name in steps:
            problems.append((f"steps[{i}].name", f"duplicate step name {step.name!r}"))
        steps.setdefault(step.name, step)
    for i, step in enumerate(spec.steps):
        problems.extend(_check_step(spec, i, step, steps))
    for name, model in spec.models.items():
        # Each runtime checks what its own fields alone cannot show (a handler module).
        problems.extend((f"models.{name}.{field}", what) for field, what in model.problems())
    for j, out in enumerate(spec.output.steps):
        if out not in steps:
            problems.append((f"output.steps[{j}]", f"unknown step {out!r}"))
    deps = {s.name: tuple(x for x in _sources(s) if x != PIPELINE_SOURCE) for s in spec.steps}
    cycle = _find_cycle(deps)
    if cycle is not None:
        i = next(k for k, s in enumerate(spec.steps) if s.name == cycle[0])
        problems.append((f"steps[{i}].inputs", "cycle: " + " -> ".join(cycle)))
        return problems
    problems.extend(_check_windows(spec, steps))
    problems.extend(_check_reach(spec, deps))
    problems.extend(_check_stages(spec))
    return problems


def stage_problem(spec: PipelineSpec, nodes: list[str]) -> str | None:
    """What keeps ``nodes`` from running as one fused stage, or None: each must be a node
    of the pipeline (a step, or ``output`` for the assembler of several output steps), and
    the stage connected, each node reading or read by another of it."""
    known: dict[str, tuple[str, ...]] = {s.name: _sources(s) for s in spec.steps}
    if len(spec.output_steps) > 1:
        known[OUTPUT_JOIN] = tuple(spec.output_steps)
    if not nodes:
        return "a stage names at least one step"
    unknown = [n for n in nodes if n not in known]
    if unknown:
        return f"unknown step {unknown[0]!r} (nodes: {', '.join(known)})"
    doubled = [n for n in nodes if nodes.count(n) > 1]
    if doubled:
        return f"step {doubled[0]!r} is named twice"
    members = set(nodes)
    reached = {nodes[0]}
    frontier = [nodes[0]]
    while frontier:
        node = frontier.pop()
        near = {s for s in known[node] if s in members}
        near |= {n for n in members if node in known[n]}
        for n in near - reached:
            reached.add(n)
            frontier.append(n)
    apart = [n for n in nodes if n not in reached]
    if apart:
        return (
            f"step {apart[0]!r} neither reads nor is read by the other steps of the stage "
            f"({', '.join(sorted(reached))}): a stage's steps hand records on to each other"
        )
    return None


def _check_stages(spec: PipelineSpec) -> Iterator[Problem]:
    placed: dict[str, int] = {}
    for i, stage in enumerate(spec.stages):
        problem = stage_problem(spec, stage)
        if problem is not None:
            yield f"stages[{i}]", problem
        for node in stage:
            if placed.setdefault(node, i) != i:
                yield f"stages[{i}]", f"step {node!r} is in stages[{placed[node]}] already"


def _check_windows(spec: PipelineSpec, steps: dict[str, StepSpec]) -> Iterator[Problem]:
    """A join must wait longer than an upstream outer/any join, which may take its whole
    window to answer: a shorter window would give up on requests still on their way."""
    for i, step in enumerate(spec.steps):
        if len(_sources(step)) < 2:
            continue
        for source in _sources(step):
            up = steps.get(source)
            if up is None or len(_sources(up)) < 2 or (up.join or "inner") == "inner":
                continue
            if step.join_window_ms <= up.join_window_ms:
                yield (
                    f"steps[{i}].join_window_ms",
                    (
                        f"{step.join_window_ms} ms is not longer than the window of the "
                        f"{up.join} join {up.name!r} it reads ({up.join_window_ms} ms): "
                        f"{step.name!r} would give up on requests {up.name!r} still answers"
                    ),
                )


def _check_reach(spec: PipelineSpec, deps: dict[str, tuple[str, ...]]) -> Iterator[Problem]:
    """Every step's results must reach an output step, or its work is lost."""
    outputs = [o for o in spec.output_steps if o in deps]
    reached = set(outputs)
    frontier = list(outputs)
    while frontier:
        for up in deps.get(frontier.pop(), ()):
            if up not in reached:
                reached.add(up)
                frontier.append(up)
    for i, step in enumerate(spec.steps):
        if step.name not in reached and step.name in deps:
            yield (
                f"steps[{i}]",
                (
                    f"the results of step {step.name!r} reach no output step "
                    f"(output.steps: {', '.join(outputs)}); read them or list it as an output"
                ),
            )


def _step_node(step: StepSpec) -> Node:
    join = JoinMode(step.join or "inner")
    return Node(step.name, NodeKind.STEP, _sources(step), join, step.join_window_ms, step)


def _assembler(spec: PipelineSpec) -> Node | None:
    """The output assembler: only a pipeline with several output steps has one."""
    outputs = spec.output_steps
    if len(outputs) < 2:
        return None
    join = JoinMode(spec.output.join)
    return Node(
        OUTPUT_JOIN, NodeKind.ASSEMBLER, tuple(outputs), join, spec.output.join_window_ms, None
    )


def build_graph(spec: PipelineSpec) -> Graph:
    """The DAG of a spec that passed ``check_spec``."""
    nodes = {s.name: _step_node(s) for s in spec.steps}
    order: list[str] = []
    done = {PIPELINE_SOURCE}
    pending = list(nodes)
    while pending:
        ready = [n for n in pending if all(src in done for src in nodes[n].sources)]
        if not ready:
            raise ValueError(f"steps {pending} cannot be ordered: run check_spec first")
        order.extend(ready)
        done.update(ready)
        pending = [n for n in pending if n not in done]
    assembler = _assembler(spec)
    if assembler is not None:
        nodes[assembler.name] = assembler
        order.append(assembler.name)
    return Graph(spec=spec, nodes=nodes, order=tuple(order))
