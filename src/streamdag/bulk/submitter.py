"""The submitter: a job's rows to a pipeline's inputs topic, its answers back, resumable.

Each row becomes one request record, written by a transactional producer whose
``transactional.id`` names the pipeline and the job, with call token
``bulk-<job token>-<row number>``. The steps carry the token to the answer, so the
submitter reads the whole outputs topic (no consumer group: it assigns every partition)
and takes the answers whose token is its own.

Checkpoint, every ``CHECKPOINT_S`` and at the end, in this order:

1. sync the files the answers were written to (``Journal.positions``);
2. produce the job's state (``state.JobState``) to ``streamdag.<p>.jobs`` in the open
   transaction, which also holds every input record sent since the last checkpoint;
3. commit the transaction.

Input records become visible to the pipeline (which reads ``read_committed``) only with
the state that counts them as sent, so a submitter killed at any point leaves either
both or neither. A new submitter of the same job first fences the old one
(``init_transactions`` aborts its open transaction), reads the last committed state,
cuts its files back to the sizes recorded there, and goes on: it reads the outputs topic
again from the recorded offsets, waits for the rows still pending and sends the rows
after ``read``. No row is sent twice and every answer lands in the files once.
A transaction that fails ends the run with ``Unavailable``; running the job again
resumes it.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from streamdag.bulk.rows import BulkResult, RowEncoder
from streamdag.bulk.sources import SourceRow
from streamdag.bulk.state import JobState, jobs_topic, jobs_topic_spec, read_jobs
from streamdag.errors import InvalidInput, StreamdagError, Unavailable
from streamdag.kafka import KafkaConnection, consumer_config, ensure_topics, producer_config
from streamdag.kafka import headers as h
from streamdag.payloads import PayloadStore
from streamdag.pipeline import PipelinePlan
from streamdag.protocol import decode_response, response_from_bytes
from streamdag.serving.request_record import must_check_in, request_headers

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "Journal", "Submitter"]

DEFAULT_MAX_IN_FLIGHT = 2_000
"""Rows sent and not yet answered: a few seconds of work for a pipeline of small models,
so the inputs topic never holds hours of one job ahead of everyone else's requests."""


class Journal(Protocol):
    """The files a job writes its answers to, as its checkpoints see them."""

    def positions(self) -> dict[str, int]:
        """Sync every file; the bytes each now holds. Called at every checkpoint."""

    def rewind(self, positions: dict[str, int]) -> None:
        """Cut every file back to ``positions`` (empty: to nothing), once, before the job
        writes anything."""


class _NoJournal:
    def positions(self) -> dict[str, int]:
        return {}

    def rewind(self, positions: dict[str, int]) -> None:
        return None


class Submitter:
    CHECKPOINT_S = 0.2

    def __init__(
        self,
        plan: PipelinePlan,
        kafka: KafkaConnection | str,
        *,
        job: str,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        mapping: dict[str, str] | None = None,
        payloads: PayloadStore | None = None,
        journal: Journal | None = None,
        on_progress: Callable[[JobState], None] | None = None,
        source: str = "",
        total: int | None = None,
    ) -> None:
        self.plan = plan
        self.kafka = KafkaConnection.of(kafka)
        self.job = job
        self.max_in_flight = max_in_flight
        self.encoder = RowEncoder(plan, mapping)
        self.payloads = payloads
        self.journal: Journal = journal or _NoJournal()
        self.on_progress = on_progress
        self.state = JobState(job, plan.name, uuid.uuid4().hex[:12], source=source, total=total)
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._in_txn = False
        self._pending: set[int] = set()
        self._offsets: dict[int, int] = {}

    # -- the run -----------------------------------------------------------------------
    def results(self, rows: Iterable[SourceRow]) -> Iterator[BulkResult]:
        """Send ``rows`` and yield each row's answer as it comes (a refused row's at once).
        A resumed job skips the rows it read before and yields only the answers it had
        not checkpointed."""
        self._open()
        try:
            yield from self._run(iter(rows))
        finally:
            self._close()

    def _run(self, rows: Iterator[SourceRow]) -> Iterator[BulkResult]:
        state = self.state
        if state.done:
            return
        rows = itertools.islice(rows, state.read, None)
        prefix = f"bulk-{state.token}-"
        exhausted = False
        last = time.monotonic()
        changed = False
        while True:
            while not exhausted and len(self._pending) < self.max_in_flight:
                row = next(rows, None)
                if row is None:
                    exhausted = True
                    break
                state.read += 1
                changed = True
                refused = self._send(row, prefix)
                if refused is not None:
                    state.failures += 1
                    yield refused
            assert self._consumer is not None
            for msg in self._consumer.consume(500, timeout=0.05):
                if msg.error() is not None:
                    continue
                self._offsets[msg.partition() or 0] = (msg.offset() or 0) + 1
                changed = True
                answer = self._answer(msg, prefix)
                if answer is not None:
                    yield answer
            finished = exhausted and not self._pending
            # The end always checkpoints: the source can be found empty after the last
            # answer was already checkpointed (its last row filled the in-flight window).
            if finished or (changed and time.monotonic() - last >= self.CHECKPOINT_S):
                self._checkpoint(done=finished)
                last, changed = time.monotonic(), False
            if finished:
                return

    def _send(self, row: SourceRow, prefix: str) -> BulkResult | None:
        """Produce ``row``'s request in the open transaction; its refusal if it does not fit
        the pipeline."""
        assert self._producer is not None
        try:
            request = self.encoder.encode(row.id, row.columns)
        except InvalidInput as exc:
            return BulkResult(row.id, row.number, {}, None, h.ErrorInfo(exc.code, exc.message, ""))
        value: bytes = request.SerializeToString()
        stub = None
        if must_check_in(value, {}, self.payloads, self.kafka.max_record_bytes):
            assert self.payloads is not None
            value, stub = self.payloads.check_in(request.id, value)
        headers = request_headers(request.id, {}, call=f"{prefix}{row.number}", payload=stub)
        if not self._in_txn:
            self._producer.begin_transaction()
            self._in_txn = True
        while True:
            try:
                self._producer.produce(
                    self.plan.inputs_topic, value, request.id.encode(), headers=headers
                )
                break
            except BufferError:  # librdkafka's queue is full: let it send some
                self._producer.poll(0.1)
        self._producer.poll(0)
        self._pending.add(row.number)
        return None

    def _answer(self, msg: Any, prefix: str) -> BulkResult | None:
        """The answer a record of the outputs topic holds, if it is one this job waits for
        (an answer seen before, after a redelivery, is not)."""
        headers = msg.headers()
        call = h.get_header(headers, h.CALL)
        if call is None or not call.startswith(prefix):
            return None
        try:
            row = int(call[len(prefix) :])
        except ValueError:
            return None
        if row not in self._pending:
            return None
        self._pending.discard(row)
        rid = (msg.key() or b"").decode("utf-8", errors="replace")
        step = h.get_header(headers, h.STEP)
        error = h.get_header(headers, h.ERROR)
        try:
            if error is not None:
                raise _Failed(h.ErrorInfo.decode(error))
            value = msg.value() or b""
            stub = h.get_header(headers, h.PAYLOAD)
            if stub is not None:
                value = self._claim(stub)
            outputs = decode_response(response_from_bytes(value))
        except _Failed as failed:
            self.state.failures += 1
            return BulkResult(rid, row, {}, failed.info.step, failed.info)
        except StreamdagError as exc:
            self.state.failures += 1
            return BulkResult(rid, row, {}, step, h.ErrorInfo(exc.code, exc.message, step or ""))
        self.state.results += 1
        return BulkResult(rid, row, outputs, step)

    def _claim(self, stub: str) -> bytes:
        if self.payloads is None:
            raise StreamdagError(
                f"the answer is in a payload store ({stub}), but the job has none: set "
                "--payload-store or STREAMDAG_PAYLOAD_STORE"
            )
        return self.payloads.claim(stub)

    # -- checkpoints -------------------------------------------------------------------
    def _checkpoint(self, *, done: bool) -> None:
        """See the module's docstring for the order and why."""
        assert self._producer is not None
        state = self.state
        state.files = self.journal.positions()
        state.pending = sorted(self._pending)
        state.offsets = {str(p): o for p, o in self._offsets.items()}
        state.updated = time.time()
        state.done = done
        try:
            if not self._in_txn:
                self._producer.begin_transaction()
                self._in_txn = True
            self._producer.produce(jobs_topic(self.plan.name), state.encode(), self.job.encode())
            self._producer.commit_transaction(60)
        except KafkaException as exc:
            raise Unavailable(
                f"job {self.job}: checkpoint failed ({exc.args[0].str()}); run the same "
                "command again to resume the job"
            ) from exc
        self._in_txn = False
        if self.on_progress is not None:
            self.on_progress(state)

    # -- opening and closing -----------------------------------------------------------
    def open_state(self) -> JobState | None:
        """The job's last committed state, if it ran before (no fencing: a look only)."""
        return read_jobs(self.kafka, self.plan.name).get(self.job)

    def _open(self) -> None:
        plan = self.plan
        ensure_topics(self.kafka, [*plan.topics(), jobs_topic_spec(plan.name)])
        self._producer = Producer(
            producer_config(
                self.kafka,
                transactional_id=f"streamdag-submit.{plan.name}.{self.job}",
                client_id="streamdag-submit",
                **{"linger.ms": 5},
            )
        )
        try:
            # Fences an earlier submitter of the job and aborts what it left open, so
            # the state read next is the last one that will ever count.
            self._producer.init_transactions(60)
        except KafkaException as exc:
            raise Unavailable(f"job {self.job}: {exc.args[0].str()}") from exc
        self._consumer = Consumer(
            consumer_config(
                self.kafka, f"streamdag.{plan.name}.submit", client_id="streamdag-submit"
            )
        )
        previous = self.open_state()
        if previous is not None:
            self.state = previous
            self.journal.rewind(previous.files)
            self._pending = set(previous.pending)
            self._offsets = {int(p): o for p, o in previous.offsets.items()}
        else:
            self.journal.rewind({})
            for partition in range(plan.partitions):
                tp = TopicPartition(plan.outputs_topic, partition)
                # Fixed now, before any row is sent: no answer can come before these.
                _, high = self._consumer.get_watermark_offsets(tp, timeout=30)
                self._offsets[partition] = int(high)
        self._consumer.assign(
            [TopicPartition(plan.outputs_topic, p, o) for p, o in self._offsets.items()]
        )
        if self.on_progress is not None:
            self.on_progress(self.state)

    def _close(self) -> None:
        if self._producer is not None and self._in_txn:
            # Rows of an unfinished run: the next run of the job sends them again. If the
            # abort fails, the broker aborts the transaction after its timeout anyway.
            with contextlib.suppress(KafkaException):
                self._producer.abort_transaction(10)
        if self._consumer is not None:
            self._consumer.close()
        if self._producer is not None:
            self._producer.flush(10)


class _Failed(Exception):
    def __init__(self, info: h.ErrorInfo) -> None:
        self.info = info
