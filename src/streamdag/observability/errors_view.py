"""The failed records of a pipeline (``streamdag.<p>.errors``), and their replay.

A record of the errors topic is the record a step failed on, as it arrived, with
``streamdag-error`` (code, message, step, attempts) and ``streamdag-source-topic`` /
``-partition`` / ``-offset`` headers. A step in the middle of the graph failed on an
intermediate result, not on what the caller sent, so a replay never re-sends that record:
it looks up the request on the inputs topic by request id (the key's partition only, from
shortly before the request entered the pipeline, by its ``streamdag-request-ts``) and
re-sends it unchanged: same key and ``x-request-id``, same value and ``content-type``,
the caller's ``x-*`` and trace headers; streamdag's own headers (``streamdag-error``,
``streamdag-reply-to`` and the rest) are dropped, so the new answer lands on the key's
partition of the outputs topic. ``streamdag-replayed`` (the errors-topic record replayed)
is added, and every step carries it on: the views mark the request's records, a new
failure among them, as a replay's. A request that was sent again after it failed (an earlier
replay) is skipped unless forced. A request whose value is in the payload store goes
again as the same stub with its ``streamdag-payload`` header, once the object it names
was read back and found whole (``PayloadLost`` names it otherwise, and nothing is sent).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError as ClientError
from confluent_kafka import KafkaException, Message, Producer

from streamdag.errors import ConfigError, KafkaOperationError
from streamdag.kafka import KafkaConnection, producer_config
from streamdag.kafka import headers as h
from streamdag.kafka.partitioner import partition_for
from streamdag.observability.records import RecordView, entered_ms, view_record
from streamdag.observability.scan import Record, TopicReader
from streamdag.payloads import PayloadStore
from streamdag.pipeline import PipelinePlan

__all__ = [
    "DEFAULT_SINCE_MS",
    "Failure",
    "ReplayResult",
    "list_failures",
    "replay_failures",
    "replay_headers",
]

DEFAULT_SINCE_MS = 3_600_000
# The request entered the pipeline shortly before its ``streamdag-request-ts``, as the
# producer's clock saw it: look a little further back.
_LOOKBACK_SLACK_MS = 5_000
_KEPT = (h.TRACEPARENT, h.TRACESTATE, h.CONTENT_TYPE, h.PAYLOAD)


@dataclass(frozen=True)
class Failure:
    """One record of the errors topic."""

    record: RecordView

    @property
    def request_id(self) -> str:
        return self.record.request_id

    @property
    def error(self) -> h.ErrorInfo:
        return self.record.error or h.ErrorInfo("internal", "no streamdag-error header", "")

    @property
    def request_ts_ms(self) -> int | None:
        """When the request entered the pipeline, as the failed record says."""
        value = self.record.headers.get(h.REQUEST_TS, "")
        return int(value) if value.isdigit() else None

    def to_dict(self, *, values: bool = False) -> dict[str, Any]:
        return self.record.to_dict(values=values)


@dataclass(frozen=True)
class ReplayResult:
    topic: str
    replayed: list[str] = field(default_factory=list)
    resubmitted: list[str] = field(default_factory=list)  # sent again since; skipped
    missing: list[str] = field(default_factory=list)  # request not on the inputs topic

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "replayed": self.replayed,
            "skipped_resubmitted": self.resubmitted,
            "missing": self.missing,
        }


def list_failures(
    plan: PipelinePlan,
    kafka: KafkaConnection | str,
    *,
    since_ms: int | None = None,
    step: str | None = None,
    code: str | None = None,
    request_ids: Sequence[str] = (),
    limit: int | None = None,
    timeout: float = 60.0,
    payloads: PayloadStore | None = None,
) -> list[Failure]:
    """The failed records since ``since_ms`` (default: an hour ago), oldest first, that
    match every filter given; ``limit`` keeps the newest. With ``request_ids``, only their
    partitions are read. Raises ``ConfigError`` for an unknown step."""
    if step is not None:
        _check_step(plan, step)
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, not {limit}")
    since = int(time.time() * 1000) - DEFAULT_SINCE_MS if since_ms is None else since_ms
    topic = plan.errors_topic
    keys = {rid.encode() for rid in request_ids}
    with TopicReader(kafka) as reader:
        count = reader.topics().get(topic, 0)
        if count == 0:
            return []  # the pipeline never ran: nothing failed
        wanted = range(count) if not keys else sorted({partition_for(k, count) for k in keys})
        tps = [(topic, p) for p in wanted]
        windows = reader.windows_since(tps, since, reader.ends(tps))
        records = reader.read(windows, keys=keys or None, timeout=timeout)
    records = [r for r in records if _matches(r, step, code)]
    records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    if limit is not None:
        records = records[-limit:]
    inputs = plan.inputs_topic
    return [
        Failure(view_record(r, "errors", inputs_topic=inputs, payloads=payloads)) for r in records
    ]


def _matches(record: Record, step: str | None, code: str | None) -> bool:
    """Filtered on the header alone: only the records shown are decoded."""
    if step is None and code is None:
        return True
    info = h.ErrorInfo.decode(h.get_header(record.headers, h.ERROR) or "")
    return (step is None or info.step == step) and (code is None or info.code == code)


def replay_headers(headers: Iterable[tuple[str, bytes]], request_id: str) -> h.Headers:
    """What a replayed request carries: the caller's ``x-*``, trace and content-type
    headers, with ``x-request-id`` set to the request id; no ``streamdag-*`` header."""
    kept = [
        (k, v)
        for k, v in headers
        if k != h.REQUEST_ID and (k.startswith("x-") or k in _KEPT) and v is not None
    ]
    return [(h.REQUEST_ID, request_id.encode()), *kept]


def replay_failures(
    plan: PipelinePlan,
    kafka: KafkaConnection | str,
    failures: Sequence[Failure],
    *,
    force: bool = False,
    timeout: float = 60.0,
    payloads: PayloadStore | None = None,
) -> ReplayResult:
    """Send the original requests of ``failures`` to the pipeline's inputs topic again,
    once per request id (see the module docstring). Requests sent again since they failed
    are skipped unless ``force``; requests no longer on the inputs topic are reported as
    missing. A stub's object is checked in ``payloads`` first (``PayloadLost``). Raises
    ``KafkaOperationError`` if a request cannot be written."""
    latest: dict[str, Failure] = {}
    for f in sorted(failures, key=lambda f: f.record.timestamp_ms):
        latest[f.request_id] = f
    topic = plan.inputs_topic
    result = ReplayResult(topic)
    if not latest:
        return result
    kafka = KafkaConnection.of(kafka)
    originals = _find_originals(plan, kafka, list(latest.values()), timeout)
    to_send: list[tuple[str, bytes, h.Headers]] = []
    for rid in latest:
        original, sent_again = originals.get(rid, (None, False))
        if original is None:
            result.missing.append(rid)
        elif sent_again and not force:
            result.resubmitted.append(rid)
        else:
            r = latest[rid].record
            mark = (h.REPLAYED, f"{r.topic}[{r.partition}]@{r.offset}".encode())
            to_send.append((rid, original.value, [*replay_headers(original.headers, rid), mark]))
    for _, _, headers in to_send:
        stub = h.get_header(headers, h.PAYLOAD)
        if stub is not None and payloads is not None:
            payloads.claim(stub)
    if to_send:
        _produce(kafka, topic, to_send, timeout)
        result.replayed.extend(rid for rid, _, _ in to_send)
    return result


def _find_originals(
    plan: PipelinePlan, kafka: KafkaConnection, failures: list[Failure], timeout: float
) -> dict[str, tuple[Record | None, bool]]:
    """Per request id: its original record on the inputs topic (None if not found), and
    whether it was sent again after it failed. One bounded read of the key partitions; a
    second of the other partitions for requests not found there (written by a client whose
    producer does not hash keys with murmur2)."""
    topic = plan.inputs_topic
    with TopicReader(kafka, client_id="streamdag-replay") as reader:
        count = reader.topics().get(topic, 0)
        if count == 0:
            return {}
        ends = reader.ends([(topic, p) for p in range(count)])
        home = {f.request_id: partition_for(f.request_id.encode(), count) for f in failures}
        found = _read_from(
            reader, topic, failures, ends, lambda f, p: p == home[f.request_id], timeout
        )
        lost = [f for f in failures if _original(f, _of(f, found), topic) is None]
        if lost and count > 1:
            found += _read_from(
                reader, topic, lost, ends, lambda f, p: p != home[f.request_id], timeout
            )
    out: dict[str, tuple[Record | None, bool]] = {}
    for f in failures:
        mine = _of(f, found)
        original = _original(f, mine, topic)
        if original is None and f.record.source is not None and f.record.source.topic == topic:
            # The failed record is the request itself, and the errors topic kept a copy.
            original = Record(
                topic=topic,
                partition=f.record.source.partition,
                offset=f.record.source.offset,
                timestamp_ms=f.record.timestamp_ms,
                key=f.request_id.encode(),
                value=f.record.value,
                headers=f.record.raw_headers,
            )
        out[f.request_id] = (original, original is not None and _sent_again(f, original, mine))
    return out


def _read_from(
    reader: TopicReader,
    topic: str,
    failures: list[Failure],
    ends: dict[tuple[str, int], int],
    where: Callable[[Failure, int], bool],
    timeout: float,
) -> list[Record]:
    """The inputs records of ``failures`` on the partitions ``where`` picks for each, from
    shortly before each request entered the pipeline."""
    times: dict[tuple[str, int], int] = {}
    for f in failures:
        entered = f.request_ts_ms or f.record.timestamp_ms - DEFAULT_SINCE_MS
        start = max(0, entered - _LOOKBACK_SLACK_MS)  # ListOffsets takes no negative times
        for tp in ends:
            if where(f, tp[1]):
                times[tp] = min(times.get(tp, start), start)
    keys = {f.request_id.encode() for f in failures}
    return reader.read(reader.windows_from(times, ends), keys=keys, timeout=timeout)


def _of(failure: Failure, found: list[Record]) -> list[Record]:
    """The records of the failure's request, each once, in the order they were written."""
    key = failure.request_id.encode()
    unique = {(r.partition, r.offset): r for r in found if r.key == key}
    return sorted(unique.values(), key=lambda r: (r.timestamp_ms, r.partition, r.offset))


def _sent_again(failure: Failure, original: Record, mine: list[Record]) -> bool:
    """Whether the request was written to the inputs topic again after it failed."""
    return any(
        r.timestamp_ms >= failure.record.timestamp_ms
        and (r.partition != original.partition or r.offset > original.offset)
        for r in mine
    )


def _original(failure: Failure, candidates: list[Record], topic: str) -> Record | None:
    """The inputs record a failure came from: the failed record itself when a step of the
    inputs topic failed; else the one that entered the pipeline at the failure's
    ``streamdag-request-ts``; else the last one written before the failure."""
    source = failure.record.source
    if source is not None and source.topic == topic:
        return next(
            (r for r in candidates if (r.partition, r.offset) == (source.partition, source.offset)),
            None,
        )
    entered = failure.request_ts_ms
    same = [r for r in candidates if entered is not None and entered_ms(r) == entered]
    if same:
        return same[-1]
    before = [r for r in candidates if r.timestamp_ms <= failure.record.timestamp_ms]
    return before[-1] if before else None


def _produce(
    kafka: KafkaConnection,
    topic: str,
    records: list[tuple[str, bytes, h.Headers]],
    timeout: float,
) -> None:
    producer = Producer(producer_config(kafka, client_id="streamdag-replay"))
    failed: list[str] = []

    def delivered(err: ClientError | None, msg: Message) -> None:
        if err is not None:
            failed.append(f"{(msg.key() or b'').decode(errors='replace')}: {err.str()}")

    try:
        for rid, value, headers in records:
            carried: list[tuple[str, str | bytes | None]] = list(headers)
            producer.produce(topic, value, rid.encode(), headers=carried, on_delivery=delivered)
            producer.poll(0)
    except (BufferError, KafkaException) as exc:
        raise KafkaOperationError(f"cannot send requests to {topic}: {exc}") from exc
    if producer.flush(timeout) > 0:
        raise KafkaOperationError(f"requests to {topic} were not acknowledged within {timeout:g} s")
    if failed:
        raise KafkaOperationError(f"cannot send requests to {topic}: {'; '.join(failed)}")


def _check_step(plan: PipelinePlan, step: str) -> None:
    known = list(plan.nodes)  # the output assembler fails requests too
    if step not in known:
        raise ConfigError(f"unknown step {step!r}: pipeline {plan.name} has {', '.join(known)}")
