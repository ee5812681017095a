"""Bounded reads of a pipeline's topics: from a point in time to the end seen at the start.

A read never follows a topic: it captures each partition's end first and stops there, so
it finishes on a busy topic too. Everything is ``read_committed``, like the pipeline's own
consumers, the captured ends included: to a read_committed client Kafka reports the last
stable offset (LSO) as a partition's end, not the high watermark, so the records of a
transaction still open at the start lie beyond the end and are left out (a read never
waits for a transaction). The offsets just below the LSO are often transaction markers,
which no consumer ever receives, so a partition is done at its end-of-partition event or
at the first record at or past ``end - 1``, never by waiting for the record at ``end - 1``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as ClientError

from streamdag.errors import ConfigError, KafkaOperationError
from streamdag.kafka import KafkaConnection, consumer_config
from streamdag.kafka.diagnose import Diagnosis

__all__ = [
    "METADATA_TIMEOUT_S",
    "READ_TIMEOUT_S",
    "Record",
    "TopicReader",
    "Window",
    "format_time",
    "parse_since",
]

METADATA_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
# ListOffsets' special timestamps: the partition's first offset, and its end (the LSO for a
# read_committed client).
_EARLIEST = -2
_LATEST = -1
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

TP = tuple[str, int]


@dataclass(frozen=True)
class Window:
    """Offsets ``[start, end)`` of one partition; ``end`` was captured before reading."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def empty(self) -> bool:
        return self.start < 0 or self.start >= self.end


@dataclass(frozen=True)
class Record:
    """A consumed record, copied out of the client's message."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def parse_since(text: str, now_ms: int | None = None) -> int:
    """Milliseconds since the epoch for ``--since``: a duration back from now (``90s``,
    ``15m``, ``1h``, ``2d``, ``1w``) or an ISO 8601 time (UTC unless it names a zone)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    match = _DURATION.match(text)
    if match is not None:
        return now_ms - int(float(match[1]) * _UNIT_MS[match[2]])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: give a duration (90s, 15m, 1h, 2d, 1w) or an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_time(ms: int) -> str:
    """A record timestamp as ISO 8601 UTC with milliseconds."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TopicReader:
    """One assign-only consumer (it never joins a group or commits) for bounded reads.

    Use as a context manager. Every method raises ``KafkaOperationError`` naming the bootstrap
    servers when Kafka cannot be reached or answers with an error.
    """

    def __init__(
        self, kafka: KafkaConnection | str, *, client_id: str = "streamdag-inspect"
    ) -> None:
        self.kafka = KafkaConnection.of(kafka)
        self._diagnosis = Diagnosis(self.kafka)
        self._consumer = Consumer(
            consumer_config(
                self.kafka,
                client_id,  # no group is ever joined: the reader only assigns
                client_id=client_id,
                **self._diagnosis.config(),
                **{
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 100,
                    # A bounded read wants whole partitions fast: 8 MB per fetch, not 1 MB,
                    # halves the time to read a large one.
                    "max.partition.fetch.bytes": 8 << 20,
                },
            )
        )

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._consumer.close()

    def topics(self, timeout: float = METADATA_TIMEOUT_S) -> dict[str, int]:
        """Topic name -> partition count, for every topic of the cluster."""
        try:
            metadata = self._consumer.list_topics(timeout=timeout)
        except KafkaException as exc:
            if not self._consumer.assignment():  # then poll serves only error callbacks
                self._consumer.poll(0)
            raise KafkaOperationError(self._diagnosis.explain(_text(exc))) from exc
        return {name: len(t.partitions) for name, t in metadata.topics.items() if not t.error}

    def offsets_at(self, partitions: Iterable[TP], timestamp_ms: int) -> dict[TP, int]:
        """Per partition, the first offset of a record at or after ``timestamp_ms`` (-1:
        none), or with the special timestamps -1 / -2 the end (LSO) / the first offset."""
        return self.offsets_for(dict.fromkeys(partitions, timestamp_ms))

    def offsets_for(self, times: dict[TP, int]) -> dict[TP, int]:
        """``offsets_at`` with a timestamp per partition; one request per broker, whatever
        the number of partitions."""
        wanted = [TopicPartition(t, p, ms) for (t, p), ms in times.items()]
        if not wanted:
            return {}
        try:
            found = self._consumer.offsets_for_times(wanted, timeout=10.0)
        except KafkaException as exc:
            raise KafkaOperationError(
                f"cannot list offsets on Kafka at {self.kafka}: {_text(exc)}"
            ) from exc
        for tp in found:
            if tp.error is not None:
                raise KafkaOperationError(
                    f"cannot list offsets of {tp.topic}[{tp.partition}]: {tp.error.str()}"
                )
        return {(tp.topic, tp.partition): int(tp.offset) for tp in found}

    def ends(self, partitions: Iterable[TP]) -> dict[TP, int]:
        return self.offsets_at(partitions, _LATEST)

    def beginnings(self, partitions: Iterable[TP]) -> dict[TP, int]:
        return self.offsets_at(partitions, _EARLIEST)

    def windows_since(
        self, partitions: Sequence[TP], since_ms: int, ends: dict[TP, int]
    ) -> list[Window]:
        """Windows from the first record at or after ``since_ms`` to the captured ends."""
        return self.windows_from(dict.fromkeys(partitions, since_ms), ends)

    def windows_from(self, times: dict[TP, int], ends: dict[TP, int]) -> list[Window]:
        """``windows_since`` with a start time per partition."""
        starts = self.offsets_for(times)
        return [Window(t, p, starts[(t, p)], ends[(t, p)]) for t, p in times]

    def read(
        self,
        windows: Iterable[Window],
        *,
        keys: Collection[bytes] | None = None,
        timeout: float = READ_TIMEOUT_S,
    ) -> list[Record]:
        """Every record of the windows (with one of ``keys``), all partitions at once.
        Raises ``KafkaOperationError`` when no partition moved on for ``timeout`` seconds (a
        partition without a leader, a lost broker), naming the last client error."""
        todo = {(w.topic, w.partition): w for w in windows if not w.empty}
        if not todo:
            return []
        consumer = self._consumer
        consumer.assign([TopicPartition(t, p, w.start) for (t, p), w in todo.items()])
        records: list[Record] = []
        finished: list[TopicPartition] = []
        last_error = ""
        stalled_at = time.monotonic() + timeout
        try:
            while todo:
                messages = consumer.consume(500, 0.2)
                if messages:
                    stalled_at = time.monotonic() + timeout
                elif time.monotonic() > stalled_at:
                    left = ", ".join(f"{t}[{p}]" for t, p in sorted(todo))
                    raise KafkaOperationError(
                        f"reading from Kafka at {self.kafka} made no progress for "
                        f"{timeout:g} s (partitions {left}){last_error}"
                    )
                for msg in messages:
                    err = msg.error()
                    if err is not None and err.code() != ClientError._PARTITION_EOF:
                        if err.fatal():
                            raise KafkaOperationError(f"reading from Kafka: {err.str()}")
                        last_error = f": {err.str()}"  # librdkafka retries these itself
                        continue
                    tp = (msg.topic() or "", msg.partition() or 0)
                    window = todo.get(tp)
                    if window is None:
                        continue
                    if err is None:
                        offset = msg.offset() or 0
                        if offset >= window.end:
                            continue
                        if keys is None or msg.key() in keys:
                            records.append(_record(msg))
                    # The end-of-partition event, or the record just before the end: done.
                    if err is not None or (msg.offset() or 0) >= window.end - 1:
                        del todo[tp]
                        finished.append(TopicPartition(*tp))
                        consumer.pause(finished[-1:])
        finally:
            # Pausing sticks to a partition across assignments: undo it for the next read.
            if finished:
                consumer.resume(finished)
            consumer.unassign()
        return records


def _record(msg: Message) -> Record:
    raw = msg.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    headers = [(k, v if isinstance(v, bytes) else v.encode()) for k, v in items if v is not None]
    return Record(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        timestamp_ms=int(msg.timestamp()[1]),
        key=msg.key(),
        value=msg.value() or b"",
        headers=headers,
    )


def _text(exc: KafkaException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.str() if isinstance(arg, ClientError) else str(arg)
