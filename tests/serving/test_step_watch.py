"""How a pipeline's readiness is judged from its groups' members and lag (no broker)."""

from __future__ import annotations

from pathlib import Path

from streamdag.pipeline import compile_plan, parse_spec
from streamdag.serving.step_watch import judge, step_lag, step_members

SPEC = {
    "name": "judged",
    "models": {
        "a": {"runtime": "python", "handler": "gateway_models:double"},
        "b": {"runtime": "python", "handler": "gateway_models:add_one"},
    },
    "steps": [{"name": "a", "model": "a"}, {"name": "b", "model": "b", "inputs": ["a.outputs"]}],
}


def test_ready_only_while_every_group_has_a_member() -> None:
    plan = compile_plan(parse_spec(SPEC, base_dir=Path(__file__).parent))
    groups = {n.name: n.group for n in plan.nodes.values()}
    ready = judge(plan, {groups["a"]: 2, groups["b"]: 1}, {"a": 0, "b": 0})
    assert ready.ready and ready.reason == "" and ready.workers == {"a": 2, "b": 1}

    down = judge(plan, {groups["a"]: 1}, {"a": 0, "b": 7})
    assert not down.ready
    assert down.reason == (
        f"step b has no worker (consumer group {groups['b']}); records waiting: b 7"
    )
    # A slow step with a worker is ready; the reason still tells what waits.
    slow = judge(plan, {groups["a"]: 1, groups["b"]: 1}, {"a": 3, "b": 0})
    assert slow.ready and slow.reason == "records waiting: a 3"


def test_lag_counts_records_past_the_committed_offset() -> None:
    tps = [("t", 0), ("t", 1), ("u", 0)]
    ends = {("t", 0): 10, ("t", 1): 5, ("u", 0): 4}
    starts = {("t", 0): 0, ("t", 1): 2, ("u", 0): 0}
    committed = {("t", 0): 7, ("u", 0): 3}
    # t[1] was never committed: read from its start.
    assert step_lag(tps, committed, ends, starts, set()) == 3 + 3 + 1
    # On a transactional topic the last commit marker is no record.
    assert step_lag(tps, committed, ends, starts, {"u"}) == 3 + 3 + 0
    assert step_lag([("u", 0)], {("u", 0): 4}, ends, starts, {"u"}) == 0


def test_a_fused_stage_group_gives_its_steps_a_worker() -> None:
    """``run --fuse`` runs steps in a group of their own (``streamdag.<p>.a+b``)."""
    plan = compile_plan(parse_spec(SPEC, base_dir=Path(__file__).parent))
    groups = {n.name: n.group for n in plan.nodes.values()}
    fused = f"streamdag.{plan.name}.a+b"
    members = step_members([plan], {fused: 1, "streamdag.other.a+b": 3})
    assert judge(plan, members, {"a": 0, "b": 0}).workers == {"a": 1, "b": 1}
    # A stage of some steps covers those only.
    part = step_members([plan], {f"streamdag.{plan.name}.a+x": 2})
    assert part.get(groups["a"]) == 2 and part.get(groups["b"], 0) == 0
