"""Where a pipeline request's time goes, from the timestamps Kafka keeps anyway.

Every record carries its CreateTime: the wall-clock millisecond at which its producer
called ``produce`` (the gateway for the inputs topic, each step's worker for its outputs;
no streamdag producer sets a timestamp of its own). With the client's own send and
receive times (same machine, same clock), each request splits into hops:

    client -> inputs        HTTP request, JSON parse, checks, gateway produce call
    inputs -> s1            gateway send (linger), s1 fetch, batch wait, decode, model, encode
    s1 -> s2, s2 -> s3      the previous step's delivery (flush + commit, or transaction
                            commit and its markers), then as above for the next step
    s3 -> client            s3's delivery, gateway fetch, reply matching, HTTP response
"""

from __future__ import annotations

import itertools
import math
import statistics
import uuid
from typing import Any

from _loadgen import percentile
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streamdag.kafka import consumer_config
from streamdag.pipeline import (
    PipelinePlan,
    PipelineSpec,
    inputs_topic,
    outputs_topic,
    step_outputs_topic,
)

__all__ = ["critical_paths", "dag_hops", "hops"]


def _timestamps(bootstrap: str, topics: list[str], partitions: int) -> dict[str, dict[str, int]]:
    """topic -> request id -> CreateTime (ms) of the first record with that key."""
    consumer = Consumer(
        consumer_config(
            bootstrap,
            f"bench-hops-{uuid.uuid4().hex[:8]}",
            client_id="bench-hops",
            **{"enable.partition.eof": True},
        )
    )
    found: dict[str, dict[str, int]] = {t: {} for t in topics}
    try:
        consumer.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in range(partitions)]
        )
        at_end: set[tuple[str, int]] = set()
        idle = 0
        while len(at_end) < len(topics) * partitions and idle < 20:
            messages = consumer.consume(1000, 0.5)
            idle = 0 if messages else idle + 1
            for m in messages:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add((m.topic(), m.partition()))
                    continue
                key = (m.key() or b"").decode()
                found[m.topic()].setdefault(key, m.timestamp()[1])
    finally:
        consumer.close()
    return found


def hops(
    bootstrap: str, spec: PipelineSpec, steps: list[str], calls: list[tuple[str, float, float]]
) -> dict[str, Any]:
    """Each hop (see the module docstring) of each of ``calls`` ((request id, wall-clock
    send, wall-clock receive)) in ms, with the median and p99 of each hop."""
    stages = [inputs_topic(spec.name)] + [step_outputs_topic(spec.name, s) for s in steps[:-1]]
    stages.append(outputs_topic(spec.name))  # where the last step's reply goes
    stamps = _timestamps(bootstrap, stages, spec.partitions)
    names = ["client -> inputs", f"inputs -> {steps[0]}"]
    names += [f"{a} -> {b}" for a, b in itertools.pairwise(steps)]
    names.append(f"{steps[-1]} -> client")
    rows: list[list[float]] = []
    for rid, sent, received in calls:
        times = [stamps[t].get(rid) for t in stages]
        if any(t is None for t in times):
            continue  # cannot happen unless a topic was cleaned meanwhile
        points = [sent * 1000, *(float(t) for t in times if t is not None), received * 1000]
        rows.append([round(b - a, 2) for a, b in itertools.pairwise(points)])
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return {
        "hops": names,
        "median_ms": [statistics.median(c) if c else math.nan for c in columns],
        "p99_ms": [percentile(list(c), 99) if c else math.nan for c in columns],
        "per_request_ms": rows,
    }


def dag_hops(
    bootstrap: str, plan: PipelinePlan, calls: list[tuple[str, float, float]]
) -> dict[str, Any]:
    """Each request's time along its critical path through a DAG, from record timestamps.

    A node (a step or the output join) is ready for a request when the last of its
    sources wrote its record for it; its time is from then until it wrote its own (fetch,
    batch wait, decode, model, encode, and the source's commit before the record could be
    read). Walking back from the output join, each node's latest source is the one that
    held it up: that path is the critical path. ``calls``: (request id, wall-clock send,
    wall-clock receive). Per node, its median time over the requests (whether or not it
    was on their critical path), and how often it was on it; the gateway's produce and
    its reply read; and every request's critical path."""
    topics = [plan.inputs_topic, *(node.outputs_topic for node in plan.nodes.values())]
    stamps = _timestamps(bootstrap, list(dict.fromkeys(topics)), plan.partitions)
    return critical_paths(plan, stamps, calls)


def critical_paths(
    plan: PipelinePlan, stamps: dict[str, dict[str, int]], calls: list[tuple[str, float, float]]
) -> dict[str, Any]:
    """``dag_hops`` from ``stamps`` (topic -> request id -> CreateTime in ms)."""
    nodes = plan.nodes
    topic_of = {name: node.outputs_topic for name, node in nodes.items()}
    last = next(reversed(nodes))  # the assembler, or the one step that answers
    per_node: dict[str, list[float]] = {name: [] for name in nodes}
    on_path: dict[str, int] = dict.fromkeys(nodes, 0)
    produce: list[float] = []
    reply: list[float] = []
    paths: list[list[tuple[str, float]]] = []
    for rid, sent, received in calls:
        start = stamps[plan.inputs_topic].get(rid)
        out = {name: stamps[topic].get(rid) for name, topic in topic_of.items()}
        if start is None or any(v is None for v in out.values()):
            continue  # cannot happen unless a topic was cleaned meanwhile
        done = {name: float(v) for name, v in out.items() if v is not None}
        ready: dict[str, tuple[str, float]] = {}
        for name, node in nodes.items():
            sources = [(s, float(start) if s == "pipeline" else done[s]) for s in node.sources]
            ready[name] = max(sources, key=lambda p: p[1])
            per_node[name].append(done[name] - ready[name][1])
        path: list[tuple[str, float]] = []
        name = last
        while name != "pipeline":
            path.append((name, done[name] - ready[name][1]))
            on_path[name] += 1
            name = ready[name][0]
        paths.append(path[::-1])
        produce.append(float(start) - sent * 1000)
        reply.append(received * 1000 - done[last])
    return {
        "requests": len(paths),
        "gateway_produce_ms": _stats(produce),
        "reply_read_ms": _stats(reply),
        "nodes": {
            name: {**_stats(per_node[name]), "on_critical_path": on_path[name]} for name in nodes
        },
        "critical_paths": [[[n, round(ms, 1)] for n, ms in p] for p in paths],
    }


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median_ms": math.nan, "p99_ms": math.nan}
    return {"median_ms": statistics.median(values), "p99_ms": percentile(values, 99)}
