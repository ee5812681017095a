"""Whether a pipeline's steps run: the members and lag of every step's consumer group.

The gateway does not start a pipeline's workers; with every worker of one step stopped,
each request would wait in Kafka for its timeout. ``StepWatch`` reads, with one
``AdminClient`` in a child process (``kafka/group_probe.py``: a librdkafka abort during a
broker's death ends only that child), for every step (and the output assembler) of the
gateway's pipelines:

    members    ``describe_consumer_groups`` of every step's group, in one request
    committed  ``list_consumer_group_offsets`` of each group (Kafka takes one a request)
    ends       ``list_offsets`` of every partition the steps read: the last committed
               (read_committed) offset, and the earliest, in two requests

and keeps a ``PipelineReadiness`` per pipeline that ``readiness`` hands out without
blocking. The gateway calls ``check`` once at start and then every ``EVERY_S`` seconds
(every ``NOT_READY_EVERY_S`` while a pipeline is not ready) on a thread of its own, never
per request: probes and callers ask for readiness far more
often than groups change. A worker that starts joins its group within seconds (its first
rebalance); one that stops leaves at once (a clean close sends LeaveGroup) or when its
session times out (a killed one).

A pipeline is ready while every step's group has a member. Lag only explains: a step
with records waiting and a worker is slow, not down. Lag counts offsets from the group's
committed offset to the partition's last committed offset; under ``exactly_once`` a step
writes in transactions, and a caught-up group's committed offset stops before the
commit marker that ends the last one, so one offset per partition of those topics is
not counted (a partition with several open transactions counts their other markers).

When the groups cannot be read (Kafka does not answer, or an ACL denies Describe on the
workers' groups), readiness falls back to the gateway's own: ready, with the reason
saying that the steps could not be checked. A Kafka that does not answer makes the
gateway not ready anyway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence

from streamdag.errors import KafkaOperationError
from streamdag.kafka import KafkaConnection
from streamdag.kafka.group_probe import GroupProbe
from streamdag.pipeline import PipelinePlan
from streamdag.pipeline.plan import STAGE_JOINER
from streamdag.pipeline.topics import consumer_group
from streamdag.serving.gateway_api import PipelineReadiness

__all__ = ["StepWatch", "judge", "step_lag", "step_members"]

log = logging.getLogger("streamdag.serving.gateway")

TP = tuple[str, int]
_NO_OFFSET = -1001  # what Kafka reports for a partition the group never committed
_UNCHECKED = "its steps could not be checked"
_NOT_CHECKED = "its steps were not checked yet"


class StepWatch:
    """The readiness of ``plans``' pipelines on the cluster ``kafka`` reaches.

    ``check`` blocks on Kafka and runs on one thread at a time (the gateway's start, then
    its watch thread); ``readiness`` may be called from any thread and never blocks.
    """

    EVERY_S = 2.0  # between two checks
    # ... while a pipeline is not ready: a worker that just joined makes it ready soon.
    NOT_READY_EVERY_S = 0.5
    TIMEOUT_S = 5.0  # of each admin request

    def __init__(self, plans: Sequence[PipelinePlan], kafka: KafkaConnection) -> None:
        self.kafka = kafka
        self._plans = {plan.name: plan for plan in plans}
        self._probe = GroupProbe(kafka)
        # Replaced whole by check, read by anyone: a dict assignment is atomic.
        self._seen: dict[str, PipelineReadiness] = {
            name: PipelineReadiness(True, _NOT_CHECKED) for name in self._plans
        }

    def prepare(self) -> None:
        """Start the probe's child process, so that it is ready for the first ``check``."""
        self._probe.start()

    def close(self) -> None:
        """Stop the probe's child process."""
        self._probe.close()

    def readiness(self, pipeline: str) -> PipelineReadiness:
        return self._seen[pipeline]

    def watch(self, stopping: threading.Event) -> None:
        """Check every ``EVERY_S`` (``NOT_READY_EVERY_S`` while a pipeline is not ready)
        until ``stopping`` is set (the body of a thread)."""
        try:
            while not stopping.wait(self._interval()):
                self.check()
        finally:
            self.close()

    def _interval(self) -> float:
        waiting = any(not r.ready for r in self._seen.values())
        return self.NOT_READY_EVERY_S if waiting else self.EVERY_S

    def check(self) -> None:
        """Read every step's group once and log what changed."""
        try:
            seen = self._read()
        except KafkaOperationError as exc:
            reason = f"{_UNCHECKED}: {exc.message}"
            seen = {name: PipelineReadiness(True, reason) for name in self._plans}
        for name, now in seen.items():
            _log_change(name, self._seen[name], now)
        self._seen = seen

    def _read(self) -> dict[str, PipelineReadiness]:
        nodes = [node for plan in self._plans.values() for node in plan.nodes.values()]
        tps = list(
            dict.fromkeys(
                (topic, p)
                for plan in self._plans.values()
                for node in plan.nodes.values()
                for topic in node.source_topics
                for p in range(plan.partitions)
            )
        )
        read = self._probe.read(
            list(dict.fromkeys(node.group for node in nodes)),
            {node.group: [tp for tp in tps if tp[0] in node.source_topics] for node in nodes},
            tps,
            self.TIMEOUT_S,
            stage_prefixes=[consumer_group(name, "") for name in self._plans],
        )
        committed, ends, starts = read.committed, read.ends, read.starts
        members = step_members(self._plans.values(), read.members)
        seen = {}
        for name, plan in self._plans.items():
            transactional = _step_topics(plan) if plan.guarantee == "exactly_once" else set()
            lag = {
                node.name: step_lag(
                    [tp for tp in tps if tp[0] in node.source_topics],
                    committed.get(node.group, {}),
                    ends,
                    starts,
                    transactional,
                )
                for node in plan.nodes.values()
            }
            seen[name] = judge(plan, members, lag)
        return seen


def step_members(plans: Iterable[PipelinePlan], groups: Mapping[str, int]) -> dict[str, int]:
    """Members per step group: its own, and those of every fused stage's group that runs
    the step (``streamdag.<p>.<a>+<b>``, ``run --fuse``)."""
    members = dict(groups)
    for plan in plans:
        prefix = consumer_group(plan.name, "")
        for group, n in groups.items():
            names = group.removeprefix(prefix)
            if names == group or STAGE_JOINER not in names:
                continue
            for name in names.split(STAGE_JOINER):
                if name in plan.nodes:
                    step_group = plan.nodes[name].group
                    members[step_group] = members.get(step_group, 0) + n
    return members


def judge(
    plan: PipelinePlan, members: Mapping[str, int], lag: Mapping[str, int]
) -> PipelineReadiness:
    """``plan``'s readiness from the members of each consumer group and the records
    waiting for each step."""
    idle = [node for node in plan.nodes.values() if members.get(node.group, 0) == 0]
    waiting = [f"{step} {n}" for step, n in lag.items() if n > 0]
    reasons = [f"step {node.name} has no worker (consumer group {node.group})" for node in idle]
    if waiting:
        reasons.append(f"records waiting: {', '.join(waiting)}")
    return PipelineReadiness(
        not idle,
        "; ".join(reasons),
        {node.name: members.get(node.group, 0) for node in plan.nodes.values()},
        dict(lag),
    )


def step_lag(
    tps: Sequence[TP],
    committed: Mapping[TP, int],
    ends: Mapping[TP, int],
    starts: Mapping[TP, int],
    transactional: set[str],
) -> int:
    """Records of ``tps`` past the group's ``committed`` offsets; a partition the group
    never committed is read from its start. On a ``transactional`` topic a committed
    offset stops before the marker of the last transaction, which is no record."""
    total = 0
    for tp in tps:
        end = ends.get(tp, 0)
        offset = committed.get(tp, _NO_OFFSET)
        if offset < 0:
            total += max(0, end - starts.get(tp, 0))
        else:
            total += max(0, end - offset - (1 if tp[0] in transactional else 0))
    return total


def _step_topics(plan: PipelinePlan) -> set[str]:
    """The topics the pipeline's steps write (the inputs topic is the gateway's)."""
    return {topic for node in plan.nodes.values() for topic in node.source_topics} - {
        plan.inputs_topic
    }


def _log_change(pipeline: str, before: PipelineReadiness, now: PipelineReadiness) -> None:
    """Log when the pipeline turns ready or not, or other steps lose their workers; the
    lag alone changes every check and is left to the web view."""
    idle_before = {s for s, n in before.workers.items() if n == 0}
    idle_now = {s for s, n in now.workers.items() if n == 0}
    if now.ready and not before.ready:
        log.info("pipeline %s is ready: every step has a worker", pipeline)
    elif not now.ready and before.reason == _NOT_CHECKED:
        # At the gateway's start its workers are often still starting: not yet a warning.
        log.info("pipeline %s is not ready: %s", pipeline, now.reason)
    elif not now.ready and (before.ready or idle_now != idle_before):
        log.warning("pipeline %s is not ready: %s", pipeline, now.reason)
    elif now.reason.startswith(_UNCHECKED) and not before.reason.startswith(_UNCHECKED):
        log.warning("pipeline %s: %s", pipeline, now.reason)
