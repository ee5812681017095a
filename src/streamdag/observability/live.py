"""Live figures of a running pipeline, read from Kafka, so they cover every worker wherever
it runs: throughput, latency, consumer lag and errors per step.

``LiveStats.read`` takes one snapshot; it blocks on Kafka, so call it off the event loop.
Each call makes fresh clients and closes them: between calls only numbers are kept.

    ends     each partition's end (the LSO: everything here is read_committed) and start,
             for every topic of the pipeline except the join-state ones
    groups   each step's committed offsets (``AdminClient.list_consumer_group_offsets``),
             asked right after the ends and answered while the rest is read
    tails    the records added to each partition since the previous read, of the last
             ``tail`` offsets per topic (spread over its partitions); kept between reads
    errors   the errors topic from where the previous read stopped (all of it, the first
             time, ``errors_batch`` records per partition and read at most)

Throughput is the growth of a topic's end since the oldest read of the last ``window_s``
seconds (since the previous read, when that is older: rates are never blank after a pause),
times the share of offsets in its tails that hold records: under ``exactly_once`` every
transaction also writes a commit marker, which takes an offset but is no record.
Latency is a result's record timestamp minus its ``streamdag-request-ts`` (when the request
entered the pipeline), over the last ``tail`` results of the step; markers (errors, skips)
are left out. Lag counts the offsets from the group's committed offset to the partition's
last record, not to its end: a caught-up group never commits past the commit marker that
ends a transaction, so measuring to the end would report a lag of one forever.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streamdag.errors import KafkaOperationError
from streamdag.kafka import KafkaConnection, admin_config
from streamdag.kafka import headers as h
from streamdag.observability.records import RecordView, view_record
from streamdag.observability.scan import Record, TopicReader, Window
from streamdag.pipeline import PipelinePlan

__all__ = ["LiveStats", "PipelineFigures", "StepFigures", "TopicFigures", "percentile"]

TP = tuple[str, int]
_KAFKA_TIMEOUT_S = 10.0
_NO_OFFSET = -1001  # what Kafka reports for a partition the group never committed


@dataclass(frozen=True)
class TopicFigures:
    topic: str
    records_per_s: float | None  # None until two reads span some time
    p50_ms: float | None = None  # end-to-end latency of its last results
    p99_ms: float | None = None
    samples: int = 0


@dataclass(frozen=True)
class StepFigures:
    """One step (or ``output``, the assembler of several output steps)."""

    step: str
    group: str
    topic: str  # where its results go
    records_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    samples: int  # results the latencies are taken from
    lag: int | None  # None when none of its input topics exists yet
    lag_by_partition: dict[str, int]  # "topic[partition]" -> records waiting
    errors: int  # records of the errors topic that this step failed
    errors_per_s: float | None


@dataclass(frozen=True)
class PipelineFigures:
    pipeline: str
    at_ms: int
    window_s: float | None  # the span the rates are measured over
    inputs: TopicFigures
    outputs: TopicFigures
    steps: list[StepFigures]
    errors: int
    errors_by_code: dict[str, int]
    latest_errors: list[RecordView] = field(default_factory=list)  # newest last


@dataclass(frozen=True)
class _Entry:
    offset: int
    timestamp_ms: int
    latency_ms: float | None  # None for a marker (an error or a skip)


@dataclass(frozen=True)
class _Tail:
    """The records of one partition's offsets ``[start, end)``: its last ones."""

    start: int
    end: int
    entries: tuple[_Entry, ...]  # the other offsets hold transaction markers

    @property
    def last(self) -> int | None:
        return self.entries[-1].offset if self.entries else None


@dataclass
class _Sample:
    at: float  # time.monotonic()
    ends: dict[str, int]  # topic -> sum of its partitions' ends
    errors: dict[str, int]  # step -> errors so far


class LiveStats:
    """Figures of ``plan``'s pipeline on the cluster ``kafka`` reaches; not thread-safe:
    one read at a time (the caller serialises them)."""

    def __init__(
        self,
        plan: PipelinePlan,
        kafka: KafkaConnection | str,
        *,
        tail: int = 200,
        latest_errors: int = 20,
        window_s: float = 10.0,
        errors_batch: int = 5_000,
    ) -> None:
        self.plan = plan
        self.kafka = KafkaConnection.of(kafka)
        self.tail = tail
        self.window_s = window_s
        self.errors_batch = errors_batch
        # step -> (its group, the topics it reads, the topic its results go to)
        self._steps: dict[str, tuple[str, list[str], str]] = {
            n.name: (n.group, list(n.source_topics), n.outputs_topic) for n in plan.nodes.values()
        }
        self._inputs, self._outputs, self._errors = (
            plan.inputs_topic,
            plan.outputs_topic,
            plan.errors_topic,
        )
        self._tailed = [self._inputs, *(t for _, _, t in self._steps.values()), self._outputs]
        self._tailed = list(dict.fromkeys(self._tailed))
        self._tails: dict[TP, _Tail] = {}
        self._error_next: dict[TP, int] = {}  # next offset to read of the errors topic
        self._error_counts: Counter[tuple[str, str]] = Counter()  # (step, code) -> count
        self._latest: deque[Record] = deque(maxlen=latest_errors)
        self._history: deque[_Sample] = deque()

    def read(self) -> PipelineFigures:
        """A snapshot; raises ``KafkaOperationError`` when Kafka cannot be reached."""
        with TopicReader(self.kafka, client_id="streamdag-live") as reader:
            existing = reader.topics()
            tps = [(t, p) for t in [*self._tailed, self._errors] for p in range(existing.get(t, 0))]
            ends = reader.ends(tps)
            # Asked now, to go with the ends just captured; answered while the tails are read.
            asked = self._ask_committed(existing)
            starts = reader.beginnings(tps)
            self._read_tails(reader, [tp for tp in tps if tp[0] != self._errors], ends, starts)
            self._read_errors(reader, [tp for tp in tps if tp[0] == self._errors], ends, starts)
        committed = self._committed(asked)
        sample = _Sample(time.monotonic(), _by_topic(ends), self._errors_by_step())
        previous = self._baseline(sample.at)
        self._history.append(sample)
        return self._figures(sample, previous, starts, committed)

    # -- reading ------------------------------------------------------------------------
    def _read_tails(
        self, reader: TopicReader, tps: list[TP], ends: dict[TP, int], starts: dict[TP, int]
    ) -> None:
        """Bring each partition's tail up to its end, reading only the records that are
        new since the previous read, and at most the ``tail`` share of the partition."""
        per_topic: Counter[str] = Counter(t for t, _ in tps)
        windows: dict[TP, tuple[int, Window]] = {}
        for t, p in tps:
            end, kept = ends[(t, p)], self._tails.get((t, p))
            if kept is not None and kept.end == end:
                continue  # nothing new on this partition
            first = max(starts[(t, p)], end - max(2, math.ceil(self.tail / per_topic[t])))
            # Only what is new since the kept tail; all of it when the topic was recreated.
            begin = first if kept is None or kept.end > end else max(first, kept.end)
            windows[(t, p)] = (first, Window(t, p, begin, end))
        found: dict[TP, list[_Entry]] = {tp: [] for tp in windows}
        for r in reader.read([w for _, w in windows.values()], timeout=_KAFKA_TIMEOUT_S):
            found[(r.topic, r.partition)].append(_Entry(r.offset, r.timestamp_ms, _latency(r)))
        for tp, (first, window) in windows.items():
            kept = self._tails.get(tp)
            old = kept.entries if kept is not None and window.start > first else ()
            entries = (*(e for e in old if e.offset >= first), *found[tp])
            self._tails[tp] = _Tail(first, window.end, entries)

    def _read_errors(
        self, reader: TopicReader, tps: list[TP], ends: dict[TP, int], starts: dict[TP, int]
    ) -> None:
        windows = []
        for tp in tps:
            begin = self._error_next.get(tp, starts[tp])
            if begin > ends[tp]:  # the topic was recreated
                begin = starts[tp]
            end = min(ends[tp], begin + self.errors_batch)
            windows.append(Window(tp[0], tp[1], max(begin, starts[tp]), end))
            self._error_next[tp] = end
        found = reader.read(windows, timeout=_KAFKA_TIMEOUT_S)
        found.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
        for record in found:
            info = h.ErrorInfo.decode(h.get_header(record.headers, h.ERROR) or "")
            self._error_counts[(info.step, info.code)] += 1
        self._latest.extend(found)
        if found:  # partitions interleave: keep the newest ones, oldest first
            newest = sorted(self._latest, key=lambda r: (r.timestamp_ms, r.partition, r.offset))
            self._latest.clear()
            self._latest.extend(newest)

    def _ask_committed(
        self, existing: dict[str, int]
    ) -> tuple[AdminClient, dict[str, Future[Any]]]:
        """Ask, per step, its group's committed offsets of the partitions it reads; the
        client goes with the answers: destroying it would fail them."""
        admin = AdminClient(admin_config(self.kafka))
        asked = {}
        for step, (group, sources, _) in self._steps.items():
            partitions = [TopicPartition(t, p) for t in sources for p in range(existing.get(t, 0))]
            if partitions:
                request = [ConsumerGroupTopicPartitions(group, partitions)]
                asked[step] = admin.list_consumer_group_offsets(
                    request, request_timeout=_KAFKA_TIMEOUT_S
                )[group]
        return admin, asked

    def _committed(
        self, asked: tuple[AdminClient, dict[str, Future[Any]]]
    ) -> dict[str, dict[TP, int]]:
        out: dict[str, dict[TP, int]] = {}
        for step, future in asked[1].items():
            try:
                result = future.result(timeout=_KAFKA_TIMEOUT_S)
            except (KafkaException, TimeoutError) as exc:
                raise KafkaOperationError(
                    f"cannot read the offsets of group {self._steps[step][0]} on Kafka at "
                    f"{self.kafka}: {exc}"
                ) from exc
            out[step] = {
                (tp.topic, tp.partition): tp.offset
                for tp in result.topic_partitions or []
                if tp.error is None
            }
        return out

    # -- figures ------------------------------------------------------------------------
    def _baseline(self, now: float) -> _Sample | None:
        """The oldest earlier read within the window, to measure rates against; the latest
        earlier read when none is that recent (reads paused longer than the window)."""
        dropped = None
        while self._history and now - self._history[0].at > self.window_s:
            dropped = self._history.popleft()
        return self._history[0] if self._history else dropped

    def _errors_by_step(self) -> dict[str, int]:
        by_step: Counter[str] = Counter()
        for (step, _), n in self._error_counts.items():
            by_step[step] += n
        return dict(by_step)

    def _figures(
        self,
        now: _Sample,
        before: _Sample | None,
        starts: dict[TP, int],
        committed: dict[str, dict[TP, int]],
    ) -> PipelineFigures:
        elapsed = now.at - before.at if before is not None else 0.0

        def rate(topic: str) -> float | None:
            if before is None or elapsed <= 0 or topic not in now.ends:
                return None
            grown = now.ends[topic] - before.ends.get(topic, now.ends[topic])
            return max(0, grown) * self._density(topic) / elapsed

        def errors_rate(step: str) -> float | None:
            if before is None or elapsed <= 0:
                return None
            return (now.errors.get(step, 0) - before.errors.get(step, 0)) / elapsed

        steps = []
        for step, (group, sources, topic) in self._steps.items():
            p50, p99, n = self._latencies(topic)
            lags = self._lags(sources, committed.get(step), starts)
            steps.append(
                StepFigures(
                    step=step,
                    group=group,
                    topic=topic,
                    records_per_s=rate(topic),
                    p50_ms=p50,
                    p99_ms=p99,
                    samples=n,
                    lag=sum(lags.values()) if lags else None,
                    lag_by_partition={f"{t}[{p}]": n for (t, p), n in sorted(lags.items())},
                    errors=now.errors.get(step, 0),
                    errors_per_s=errors_rate(step),
                )
            )
        p50, p99, n = self._latencies(self._outputs)
        by_code: Counter[str] = Counter()
        for (_, code), count in self._error_counts.items():
            by_code[code] += count
        return PipelineFigures(
            pipeline=self.plan.name,
            at_ms=int(time.time() * 1000),
            window_s=round(elapsed, 3) if before is not None else None,
            inputs=TopicFigures(self._inputs, rate(self._inputs)),
            outputs=TopicFigures(self._outputs, rate(self._outputs), p50, p99, n),
            steps=steps,
            errors=sum(by_code.values()),
            errors_by_code=dict(sorted(by_code.items())),
            latest_errors=[
                view_record(r, "errors", inputs_topic=self._inputs) for r in self._latest
            ],
        )

    def _density(self, topic: str) -> float:
        """The share of a topic's recent offsets that hold records (1 without a sample)."""
        tails = [t for (name, _), t in self._tails.items() if name == topic]
        span = sum(t.end - t.start for t in tails)
        return sum(len(t.entries) for t in tails) / span if span else 1.0

    def _latencies(self, topic: str) -> tuple[float | None, float | None, int]:
        results = [
            (e.timestamp_ms, e.latency_ms)
            for (name, _), t in self._tails.items()
            if name == topic
            for e in t.entries
            if e.latency_ms is not None
        ]
        results.sort()
        latencies = [ms for _, ms in results[-self.tail :]]
        return percentile(latencies, 0.5), percentile(latencies, 0.99), len(latencies)

    def _lags(
        self, sources: list[str], committed: dict[TP, int] | None, starts: dict[TP, int]
    ) -> dict[TP, int]:
        lags: dict[TP, int] = {}
        for tp, tail in self._tails.items():
            if tp[0] not in sources:
                continue
            # Past the last record there are only markers; with no record in the tail,
            # none lies beyond its start.
            last = tail.last + 1 if tail.last is not None else tail.start
            offset = (committed or {}).get(tp, _NO_OFFSET)
            # A group that never committed starts from the earliest record.
            done = offset if offset >= 0 else starts.get(tp, 0)
            lags[tp] = max(0, last - done)
        return lags


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``values``; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _latency(record: Record) -> float | None:
    """Milliseconds from the request entering the pipeline to this result; None for a
    marker or a record without ``streamdag-request-ts``."""
    headers = record.headers
    if h.get_header(headers, h.ERROR) is not None or h.get_header(headers, h.SKIPPED):
        return None
    entered = h.get_header(headers, h.REQUEST_TS) or ""
    if not entered.isdigit():
        return None
    return float(max(0, record.timestamp_ms - int(entered)))


def _by_topic(ends: dict[TP, int]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for (topic, _), end in ends.items():
        out[topic] += end
    return dict(out)
