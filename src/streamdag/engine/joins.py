"""Join state of a fan-in step: the pieces of each request, until the join completes.

A join step reads several co-partitioned topics. Each call of a request (its request id
and ``streamdag-call``, so that a request id sent again is a new request) collects one
*piece* per source: a result, a skip (the source's trigger did not fire) or an error
marker. The state of partition ``i`` lives in memory and in partition ``i`` of the
compacted ``<step>.join-state`` topic, written in the same transaction as the consumed
offsets, so a restarted worker restores exactly what had been committed.

When a join completes (by mode):
    inner  every source has a piece: run with all results; any error -> error; any skip -> skip
    outer  every source has a piece, or ``join_window_ms`` passed: run with the results
    any    the first result runs; later pieces of that request are ignored until the window
           passes (a "done" mark remembers it)
An error piece completes any join at once as an error, without waiting for the window.
A request whose pieces would make a changelog record over ``max_bytes`` is ``oversized``:
it fails at once, as a record that cannot be written must never stop the partition.
A completed or expired request gets a tombstone in the changelog.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import Consumer, KafkaError, TopicPartition

from streamdag.engine.envelope import Envelope, OutRecord
from streamdag.errors import KafkaOperationError
from streamdag.kafka import KafkaConnection, consumer_config
from streamdag.kafka import headers as h
from streamdag.pipeline.topics import restore_group

__all__ = ["Completion", "JoinState", "Piece", "join_key", "piece_kind", "restore_partitions"]

Kind = Literal["result", "skip", "error"]
Outcome = Literal["run", "skip", "error", "expired", "oversized"]


@dataclass
class Piece:
    kind: Kind
    value: bytes
    headers: h.Headers

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "value": base64.b64encode(self.value).decode(),
            "headers": [[k, base64.b64encode(v).decode()] for k, v in self.headers],
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Piece:
        raw_headers = data.get("headers") or []
        assert isinstance(raw_headers, list)
        kind = str(data["kind"])
        assert kind in ("result", "skip", "error")
        return cls(
            kind=kind,  # type: ignore[arg-type]
            value=base64.b64decode(str(data["value"])),
            headers=[(str(k), base64.b64decode(str(v))) for k, v in raw_headers],
        )


def piece_kind(env: Envelope) -> Kind:
    if env.error is not None:
        return "error"
    if h.get_header(env.headers, h.SKIPPED) is not None:
        return "skip"
    return "result"


@dataclass
class _Entry:
    request_id: str
    partition: int
    first_ms: float
    pieces: dict[str, Piece] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    done: bool = False  # answered already; later pieces are only counted, until all came

    def encode(self) -> bytes:
        return json.dumps(
            {
                "request_id": self.request_id,
                "first_ms": self.first_ms,
                "done": self.done,
                "seen": sorted(self.seen),
                "pieces": {s: p.to_json() for s, p in self.pieces.items()},
            }
        ).encode()

    @classmethod
    def decode(cls, key: str, partition: int, value: bytes) -> _Entry:
        data = json.loads(value)
        pieces = {s: Piece.from_json(p) for s, p in data["pieces"].items()}
        return cls(
            request_id=str(data.get("request_id", key)),
            partition=partition,
            first_ms=float(data["first_ms"]),
            done=bool(data.get("done")),
            seen=set(data.get("seen", pieces)),
            pieces=pieces,
        )


@dataclass(frozen=True)
class Completion:
    """A join that is ready: ``run`` the model on ``pieces`` (results only), forward a
    ``skip`` or an ``error`` (then ``error_piece`` is the upstream error marker), or report
    that an ``inner`` join ``expired`` with some pieces missing. ``key`` names the call in
    the join state."""

    key: str
    request_id: str
    partition: int
    outcome: Outcome
    pieces: dict[str, Piece]
    error_piece: Piece | None = None
    detail: str = ""  # why an ``oversized`` join failed


class JoinState:
    def __init__(
        self,
        sources: Iterable[str],
        mode: str,
        window_ms: float,
        changelog_topic: str,
        *,
        max_bytes: int | None = None,
    ) -> None:
        self.sources = tuple(sources)
        self.max_bytes = max_bytes
        self.mode = mode
        self.window_ms = window_ms
        # How long an answered request remembers it was answered, so that pieces arriving
        # late are not taken for a new request.
        self.done_retention_ms = max(10 * window_ms, 60_000.0)
        self.changelog_topic = changelog_topic
        self.entries: dict[str, _Entry] = {}
        self._dirty: set[str] = set()
        self._gone: dict[str, int] = {}  # request id -> partition, tombstones to write

    # -- restore and ownership ---------------------------------------------------------
    def restore(
        self, partition: int, key: str, value: bytes | None, now_ms: float | None = None
    ) -> None:
        """Apply one changelog record while restoring a partition (None = tombstone).

        Windows are measured on this worker's clock from when it holds a request, so a
        restored request gets a fresh window: the time the partition had no owner must not
        expire requests whose pieces are still on their way.
        """
        if value is None:
            self.entries.pop(key, None)
        else:
            entry = _Entry.decode(key, partition, value)
            entry.first_ms = max(entry.first_ms, now_ms if now_ms is not None else 0.0)
            self.entries[key] = entry

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget partitions we no longer own; their new owner restores them."""
        lost = set(partitions)
        for key in [k for k, e in self.entries.items() if e.partition in lost]:
            del self.entries[key]
            self._dirty.discard(key)
            self._gone.pop(key, None)

    # -- pieces in, completions out ----------------------------------------------------
    def add(self, source: str, env: Envelope, now_ms: float) -> Completion | None:
        key = join_key(env)
        entry = self.entries.get(key)
        if entry is None:
            entry = _Entry(env.request_id, partition=env.partition, first_ms=now_ms)
            self.entries[key] = entry
        if source in entry.seen:
            return None  # a duplicate piece (at-least-once upstream)
        entry.seen.add(source)
        self._dirty.add(key)
        if entry.done:
            if len(entry.seen) == len(self.sources):
                self._forget(key, entry)  # every late piece came: let go
            return None
        kind = piece_kind(env)
        entry.pieces[source] = Piece(kind, env.value, h.passthrough(env.headers) + _own(env))
        completion = self._check(key, entry, expired=False)
        if completion is None and self.max_bytes is not None:
            size = _encoded_size(entry)
            if size > self.max_bytes:
                detail = (
                    f"the pieces of request {entry.request_id} that arrived so far take "
                    f"{size:,} bytes of join state, over the {self.max_bytes:,}-byte limit "
                    "of a Kafka record (message.max.bytes)"
                )
                first = next(iter(entry.pieces.values()))
                completion = Completion(
                    key, entry.request_id, entry.partition, "oversized", {}, first, detail
                )
                entry.done = True
                entry.pieces = {}
        return completion

    def expire(self, now_ms: float) -> list[Completion]:
        """Requests whose window passed: ``outer`` runs with what arrived, ``inner`` reports
        the missing pieces; answered requests are forgotten after their retention."""
        due = []
        for key, entry in list(self.entries.items()):
            age = now_ms - entry.first_ms
            if entry.done:
                if age >= self.done_retention_ms:
                    self._forget(key, entry)
            elif age >= self.window_ms:
                completion = self._check(key, entry, expired=True)
                if completion is not None:
                    due.append(completion)
        return due

    def _check(self, key: str, entry: _Entry, *, expired: bool) -> Completion | None:
        pieces = entry.pieces
        errors = [p for p in pieces.values() if p.kind == "error"]
        results = {s: p for s, p in pieces.items() if p.kind == "result"}
        complete = len(entry.seen) == len(self.sources)
        outcome: Outcome | None = None
        if errors:
            outcome = "error"
        elif self.mode == "any":
            if results:
                outcome = "run"
            elif complete:
                outcome = "skip"
            elif expired:
                outcome = "expired"
        elif complete:
            if self.mode == "inner":
                outcome = "run" if len(results) == len(self.sources) else "skip"
            else:
                outcome = "run" if results else "skip"
        elif expired:
            outcome = "run" if self.mode == "outer" and results else "expired"
        if outcome is None:
            return None
        completion = Completion(
            key,
            entry.request_id,
            entry.partition,
            outcome,
            dict(results),
            errors[0] if errors else None,
        )
        if complete:
            self._forget(key, entry)
        else:
            entry.done = True  # answered before every piece came: remember that
            entry.pieces = {}
            self._dirty.add(key)
        return completion

    def missing(self, completion: Completion) -> list[str]:
        """Sources that had not sent a piece when ``completion`` was made."""
        entry = self.entries.get(completion.key)
        seen = entry.seen if entry is not None else set(completion.pieces)
        return [s for s in self.sources if s not in seen]

    def _forget(self, key: str, entry: _Entry) -> None:
        self.entries.pop(key, None)
        self._dirty.discard(key)
        self._gone[key] = entry.partition

    # -- changelog ---------------------------------------------------------------------
    def changelog(self) -> list[OutRecord]:
        """State updates and tombstones since the last call, for the batch's transaction."""
        records = [
            OutRecord(
                self.changelog_topic,
                key,
                self.entries[key].encode(),
                [],
                partition=self.entries[key].partition,
            )
            for key in sorted(self._dirty)
        ]
        records += [
            OutRecord(self.changelog_topic, key, None, [], partition=partition)
            for key, partition in sorted(self._gone.items())
        ]
        self._dirty.clear()
        self._gone.clear()
        return records


def _encoded_size(entry: _Entry) -> int:
    """About the bytes of ``entry``'s changelog record (values and headers in base64)."""
    size = 512 + len(entry.request_id)
    for piece in entry.pieces.values():
        size += 128 + 4 * (len(piece.value) + sum(len(k) + len(v) for k, v in piece.headers)) // 3
    return size


def join_key(env: Envelope) -> str:
    """The join state's key for a piece: its request id and call (``streamdag-call``);
    the request id alone for a record that names no call."""
    call = h.get_header(env.headers, h.CALL)
    return env.request_id if call is None else json.dumps([env.request_id, call])


def _own(env: Envelope) -> h.Headers:
    own = [(h.REQUEST_ID, env.request_id.encode()), (h.REQUEST_TS, str(env.request_ts_ms).encode())]
    for name in (h.ERROR, h.PAYLOAD):  # the payload header: where a stub's value is
        value = h.get_header(env.headers, name)
        if value is not None:
            own.append((name, value.encode()))
    return own


def restore_partitions(
    state: JoinState, kafka: KafkaConnection, partitions: Iterable[int], timeout: float = 60.0
) -> int:
    """Read the committed changelog of ``partitions`` into ``state``; return the number of
    pending requests restored. Reads up to the last stable offset (read_committed), so a
    zombie's open transaction is waited out, never half-applied."""
    wanted = sorted(set(partitions))
    if not wanted:
        return 0
    extra: dict[str, Any] = {"enable.partition.eof": True}
    group = restore_group(state.changelog_topic)
    consumer = Consumer(consumer_config(kafka, group, **extra))
    try:
        consumer.assign([TopicPartition(state.changelog_topic, p, -2) for p in wanted])
        pending = set(wanted)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise KafkaOperationError(
                    f"restoring {state.changelog_topic} partitions {sorted(pending)} "
                    f"took over {timeout:.0f}s"
                )
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                continue
            state.restore(
                msg.partition() or 0, (msg.key() or b"").decode(), msg.value(), time.time() * 1000
            )
    finally:
        consumer.close()
    return sum(1 for e in state.entries.values() if e.partition in set(wanted))
