"""The step worker: one consumer-group member that turns input records into results.

It runs a stage (``stage.py``): one step, or several fused steps that hand records on to
each other in memory and commit together; either way one consumer, one producer and one
model thread, and what is said below holds for the whole stage.

Loop: fetch a micro-batch -> decode -> run the model -> deliver results and offsets
together (see ``delivery.py``). A fast model (its calls take under ``_INLINE_MODEL_S`` per
batch, on average) runs on the worker's own thread: one thread fetches, decodes, runs the
model, encodes and produces, and no other is woken. A slower one runs in a helper thread
while the consumer stays alive (paused partitions, polled) and earlier batches are
delivered. A worker keeps nothing between batches: all state is in Kafka, so it can
be killed, restarted or multiplied at any moment.

Rebalances: a revocation that arrives while a batch is in flight first finishes and
commits that batch (the partitions are still ours inside the callback); lost partitions
(a missed session) drop the batch uncommitted, for their new owner to redo. The whole
revoke path (waiting for the model, producing, sending offsets, committing, replacing a
failed producer) shares one deadline, well inside max.poll.interval.ms; a batch whose
model is still running when it passes is dropped uncommitted, like a lost one.

A model call that outlives the step's ``timeout`` fails its request with
deadline_exceeded; once ``_MAX_HUNG`` such calls are still running, the worker drops its
batches uncommitted, leaves the group and fails, so the process exits non-zero for its
supervisor to replace, and the batch is redone by the partitions' next owner.
"""

from __future__ import annotations

import enum
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from opentelemetry.trace import Span, StatusCode

from streamdag.engine.delivery import (
    AtLeastOnceDelivery,
    Delivery,
    TransactionalDelivery,
    new_transactional_id,
)
from streamdag.engine.joins import restore_partitions
from streamdag.engine.logic import Predict
from streamdag.engine.plan import StepPlan
from streamdag.engine.stage import Processed, StageLogic, StagePlan
from streamdag.engine.timeouts import Deadline, TimedCalls
from streamdag.errors import ModelHung
from streamdag.kafka import KafkaConnection, consumer_config
from streamdag.observability import metrics, tracing
from streamdag.observability.logging import record_context
from streamdag.payloads import PayloadStore
from streamdag.pipeline import NodeKind
from streamdag.protocol.datatypes import Arrays
from streamdag.runtimes import Model

__all__ = ["StepWorker"]

log = logging.getLogger("streamdag.engine.worker")

T = TypeVar("T")

# Between keep-alive polls while the model runs; far below max.poll.interval.ms.
_KEEPALIVE_S = 1.0
# How long an idle worker waits for records in one poll. Whatever it delivered is
# committed before it starts waiting, so this bounds only how often the loop turns.
_IDLE_WAIT_S = 0.25
# Batches fetched ahead of the one being delivered: the model thread keeps working while
# a delivery waits (a flush, a transaction commit). Uncommitted work is redone after a
# crash or a rollback either way; this bounds how much.
_AHEAD = 2
# ... as long as the batches not yet delivered hold less than this many bytes of records;
# with large requests only one batch is worked on ahead.
_AHEAD_BYTES = 64 * 1024 * 1024
# Between consumer-lag measurements (one watermark request per assigned partition).
_LAG_EVERY_S = 5.0
# Below this much model time per batch (a moving average), the worker's own thread runs
# the model: handing each batch to a helper thread and back costs more than it overlaps.
_INLINE_MODEL_S = 0.005
_BEAT_EVERY_S = 1.0
# The revoke path's budget, and never more than half of max.poll.interval.ms: the group's
# other members wait for this worker's revoke before the rebalance can end.
_REVOKE_S = 30.0
# Model calls still running past their timeout before the worker gives up and exits.
_MAX_HUNG = 3


class BatchState(enum.Enum):
    WORKING = "working"  # fetched; the model thread works on it (or will)
    DELIVERED = "delivered"  # handed to the delivery (committed, or rolled back and refetched)
    DROPPED = "dropped"  # never to be committed: partitions lost or rewound, or the model hung


class _Batch:
    def __init__(self, messages: list[Any]) -> None:
        self.messages = messages
        self.future: Future[Processed] | None = None
        self.state = BatchState.WORKING

    @functools.cached_property
    def size(self) -> int:
        """Bytes of the records' values."""
        return sum(len(m) for m in self.messages)

    def offsets(self) -> list[TopicPartition]:
        # A partition's records come in offset order, so its last one is its highest.
        last = {(m.topic(), m.partition()): m.offset() for m in self.messages}
        return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


class StepWorker:
    """Runs one step, or a fused stage of steps, of a pipeline until ``stop`` is set; see
    the module docstring. ``model``: the step's model (None for the output assembler), or
    for a stage the models of its steps by model name."""

    def __init__(
        self,
        plan: StepPlan | StagePlan,
        model: Model | Mapping[str, Model] | None,
        kafka: KafkaConnection | str,
        stop: threading.Event,
        *,
        instance_id: str | None = None,
        consumer_overrides: dict[str, Any] | None = None,
        payloads: PayloadStore | None = None,
    ) -> None:
        stage = plan if isinstance(plan, StagePlan) else StagePlan.of(plan)
        self.plan = stage
        self.payloads = payloads
        if isinstance(model, Mapping):
            models: Mapping[str, Model] = model
        else:
            models = {} if model is None else {stage.steps[0].model: model}
        self.kafka = KafkaConnection.of(kafka)
        self.stop = stop
        self.instance_id = instance_id
        self._consumer_overrides = consumer_overrides or {}
        self._labels = (stage.pipeline, stage.name)
        # Fetched batches not yet delivered, oldest first: the model works on the newer
        # ones while the oldest is being delivered.
        self._pending: list[_Batch] = []
        self._stash: list[Any] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{stage.name}")
        self._revoke_s = _REVOKE_S
        self._model_s = 0.0  # model time of the batch being processed
        # Its moving average; None until measured: the first batches run on the model
        # thread, so a model that turns out slow never stops the consumer's polling.
        self.model_s_per_batch: float | None = None
        self._rollbacks = 0  # how many times the delivery rolled back and rewound
        self._paused: list[TopicPartition] = []
        self.logic = StageLogic(
            stage, {s.step: self._predictor(s, models.get(s.model)) for s in stage.steps}, payloads
        )
        self._lag_due = 0.0
        self._beat_due = 0.0
        self._ctx = record_context(stage.pipeline, stage.name)

    # -- lifecycle ---------------------------------------------------------------------
    def run(self) -> None:
        plan = self.plan
        client_id = f"{plan.group_id}.{self.instance_id or 'worker'}"
        overrides: dict[str, Any] = {
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "max.poll.interval.ms": 300_000,
            **self._consumer_overrides,
        }
        self._revoke_s = min(_REVOKE_S, float(overrides["max.poll.interval.ms"]) / 2000)
        if plan.has_join:
            # Partition i of every source topic must land on the same worker, with its join
            # state: the range assignor gives that for co-partitioned topics.
            overrides["partition.assignment.strategy"] = "range"
        # No static membership (group.instance.id): when the group coordinator's broker
        # dies, librdkafka's rejoin under the same instance id can be fenced by its own
        # earlier member id, a fatal consumer error that would stop the step for good. The
        # instance id names the transactional producer instead, which is what fences a
        # dead predecessor's open transaction at once.
        self.consumer = Consumer(
            consumer_config(self.kafka, plan.group_id, client_id=client_id, **overrides)
        )
        self.delivery = self._new_delivery()
        self.consumer.subscribe(
            list(plan.source_topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info(
            "worker start: pipeline=%s step=%s group=%s topics=%s guarantee=%s",
            plan.pipeline,
            plan.name,
            plan.group_id,
            ",".join(plan.source_topics),
            plan.guarantee,
            extra=self._ctx,
        )
        try:
            while not self.stop.is_set():
                self._run_once()
        finally:
            self._shutdown()

    def _new_delivery(self) -> Delivery:
        plan = self.plan
        options: dict[str, Any] = {
            # Join state, which nobody waits for (see _run_once).
            "quiet_topics": [s.changelog_topic for s in plan.steps if s.changelog_topic],
            "on_commit": metrics.COMMIT_SECONDS.labels(*self._labels).observe,
        }
        if plan.guarantee == "exactly_once":
            txid = new_transactional_id(plan.group_id, self.instance_id)
            return TransactionalDelivery(self.consumer, self.kafka, txid, **options)
        return AtLeastOnceDelivery(self.consumer, self.kafka, plan.group_id, **options)

    def _shutdown(self) -> None:
        try:
            self._complete_pending()  # SIGTERM: finish and commit what was fetched
        except ModelHung:
            pass  # already raised from the loop: its batches are dropped
        finally:
            self._close()

    def _close(self) -> None:
        # Every fetched batch was delivered or rolled back before we got here; closing the
        # consumer leaves the group at once so the partitions move without a session wait.
        try:
            self.delivery.close()
        finally:
            self.consumer.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            log.info(
                "worker stop: pipeline=%s step=%s",
                self.plan.pipeline,
                self.plan.name,
                extra=self._ctx,
            )

    # -- rebalance callbacks (run inside consumer.poll on this thread) --------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info(
            "rebalance: step=%s assigned %s", self.plan.name, _fmt(partitions), extra=self._ctx
        )
        self._restore({p.partition for p in partitions})
        if self._pending and partitions:
            # Cooperative assignment can add partitions while a batch is in flight; they
            # stay paused until it is delivered, like the rest.
            consumer.pause(partitions)
            self._paused.extend(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("rebalance: step=%s revoked %s", self.plan.name, _fmt(partitions), extra=self._ctx)
        deadline = Deadline(self._revoke_s)
        # Commit first: the partitions are still ours here.
        self._complete_pending(deadline)
        if not self.delivery.commit(deadline):
            self._rewound()
        revoked = {(p.topic, p.partition) for p in partitions}
        self._stash = [m for m in self._stash if (m.topic(), m.partition()) not in revoked]
        self._drop_join_state({p.partition for p in partitions})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("rebalance: step=%s lost %s", self.plan.name, _fmt(partitions), extra=self._ctx)
        self._drop(self._pending)  # cannot commit any more; the new owner redoes them
        self._stash = []
        self._drop_join_state({p.partition for p in partitions})

    def _drop(self, batches: Sequence[_Batch]) -> None:
        for batch in batches:
            batch.state = BatchState.DROPPED

    def _rewound(self) -> None:
        """The delivery rolled back every batch since its last commit and rewound the
        consumer: drop what was fetched since, and reload the join state, which ran ahead
        of what was committed."""
        self._rollbacks += 1
        self._drop(self._pending)
        if self.logic.joins:
            for batch in self._pending:
                if batch.future is not None:
                    wait([batch.future])  # the model thread must be done with the join state
        self._stash = []
        self._restore({p.partition for p in self.consumer.assignment()})

    def _drop_join_state(self, partitions: set[int]) -> None:
        """Forget the join state of ``partitions``. It belongs to the model thread, so the
        forgetting runs there, after any batch it is still working on."""
        joins = self.logic.joins
        if not joins or not partitions:
            return
        running = [b.future for b in self._pending if b.future is not None]
        for _, join in joins:
            if running and not all(f.done() for f in running):
                self._executor.submit(join.drop_partitions, partitions)
            else:
                join.drop_partitions(partitions)

    # -- the loop ----------------------------------------------------------------------
    def _fetch(self, wait_s: float) -> list[Any]:
        """A micro-batch: what was stashed, else what the consumer has, waiting up to
        ``wait_s`` for a first record."""
        size = self.plan.batch.max_size
        messages = self._stash[:size]
        self._stash = self._stash[size:]
        if not messages:
            first = self.consumer.poll(wait_s)
            if first is None:
                return []
            messages = [first]
        if len(messages) < size:
            # Take what is already fetched; wait up to max_wait_ms for more only while
            # records keep coming, so a lone request is never held back for a batch.
            more = self.consumer.consume(size - len(messages), 0)
            messages.extend(more)
            if more and len(messages) < size and self.plan.batch.max_wait_ms > 0:
                wait_s = self.plan.batch.max_wait_ms / 1000
                messages.extend(self.consumer.consume(size - len(messages), wait_s))
        good = []
        for m in messages:
            err = m.error()
            if err is None:
                good.append(m)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error on step=%s: %s", self.plan.name, err.str())
        return good

    def _restore(self, partitions: set[int]) -> None:
        if not partitions:
            return
        for step, join in self.logic.joins:
            join.drop_partitions(partitions)
            count = restore_partitions(join, self.kafka, partitions)
            log.info(
                "join state: step=%s restored %d pending requests of partitions %s",
                step,
                count,
                sorted(partitions),
            )

    def _measure(self) -> None:
        """The loop's heartbeat metric every second, consumer lag every _LAG_EVERY_S."""
        now = time.monotonic()
        if now >= self._beat_due:
            self._beat_due = now + _BEAT_EVERY_S
            metrics.WORKER_LAST_LOOP.labels(*self._labels).set_to_current_time()
        if now < self._lag_due:
            return
        self._lag_due = now + _LAG_EVERY_S
        assignment = self.consumer.assignment()
        for tp in self.consumer.position(assignment) if assignment else []:
            try:
                # Cached: updated by every fetch; a request to the broker would queue behind
                # the consumer's fetches and stall the loop.
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high < 0:
                continue  # nothing fetched from this partition yet
            lag = high - tp.offset if tp.offset >= 0 else high
            metrics.CONSUMER_LAG.labels(*self._labels, tp.topic, str(tp.partition)).set(lag)
        if not self._pending:
            for step, join in self.logic.joins:
                metrics.JOIN_PENDING.labels(self.plan.pipeline, step).set(len(join.entries))

    def _run_once(self) -> None:
        self._measure()
        # Only what is already there: an idle wait now would hold back the delivery of a
        # pending batch, and the commit of one already delivered.
        messages = self._fetch(0)
        if not messages and not self._pending:
            wait_s = _IDLE_WAIT_S
            if self.delivery.awaited:
                # Nothing more to do: commit what was delivered before waiting for records,
                # so a lone request's results reach the next step now, not when the wait
                # ends (under exactly_once the next step reads only committed records).
                if not self.delivery.commit():
                    self._rewound()
                    return
            elif self.delivery.has_uncommitted():
                # Only a join's state and offsets are open, which nobody waits for: the
                # request's next piece, likely on its way, goes into the same commit as
                # the result it completes, and the interval commits the rest.
                wait_s = min(wait_s, self.delivery.due_in())
            messages = self._fetch(wait_s)
        # Join state belongs to the model thread while a batch is pending.
        if messages or (not self._pending and self.logic.due(time.time() * 1000)):
            batch = _Batch(messages)
            average = self.model_s_per_batch
            # A join's state belongs to the helper thread: a join step always runs there.
            if average is not None and average < _INLINE_MODEL_S and not self.logic.joins:
                # Fast: finish what the helper thread has, then work on this thread.
                rollbacks = self._rollbacks
                self._complete_pending()
                if self._rollbacks != rollbacks:
                    return  # the consumer was rewound: these records will come again
                self._pending.append(batch)
                batch.future = _run_here(self._process, messages, time.time_ns())
                self._complete(batch)
                return
            self._pending.append(batch)
            batch.future = self._executor.submit(self._process, messages, time.time_ns())
        # Deliver the oldest batch while the model works on newer ones; when no new
        # records came, deliver what is there.
        while self._pending and (not messages or self._too_far_ahead()):
            self._complete(self._pending[0])
        if not messages and not self._pending:
            # Idle: commit what someone waits for, the rest once the interval is due; a
            # rollback means refetch.
            delivery = self.delivery
            due = delivery.awaited or delivery.due_in() == 0
            if due and delivery.has_uncommitted() and not delivery.commit():
                self._rewound()

    def _too_far_ahead(self) -> bool:
        if len(self._pending) > _AHEAD:
            return True
        return len(self._pending) > 1 and sum(b.size for b in self._pending) > _AHEAD_BYTES

    def _complete_pending(self, deadline: Deadline | None = None) -> None:
        while self._pending:
            self._complete(self._pending[0], deadline)

    def _complete(self, batch: _Batch, deadline: Deadline | None = None) -> None:
        """Wait for the batch's records (serving the group meanwhile, until ``deadline``)
        and deliver them; on a rollback, drop every later batch too: the consumer was
        rewound past them. A hung model drops every batch and raises ``ModelHung``."""
        future = batch.future
        assert future is not None
        try:
            if batch.state is BatchState.WORKING and not future.done():
                if deadline is not None:
                    wait([future], timeout=deadline.left())
                elif not wait([future], timeout=self.delivery.commit_interval_s).done:
                    # A slow model: commit what was delivered rather than hold it open.
                    if not self.delivery.commit():
                        self._rewound()
                        return
                    if not wait([future], timeout=_KEEPALIVE_S).done:
                        self._keep_alive(batch)
            if batch.state is BatchState.WORKING and not future.done():
                log.warning(
                    "revoke: step=%s model still busy after %gs; batch dropped uncommitted",
                    self.plan.name,
                    self._revoke_s,
                    extra=self._ctx,
                )
                self._drop(self._pending)
                self._stash = []
            if batch.state is BatchState.DROPPED:
                return  # nothing may be committed; whoever owns the partitions redoes it
            try:
                done = future.result()
            except ModelHung as exc:
                log.error("step=%s: %s", self.plan.name, exc, extra=self._ctx)
                self._drop(self._pending)
                self._stash = []
                raise
            batch.state = BatchState.DELIVERED
            produce_ns = time.time_ns()
            delivered = self.delivery.deliver(done.records, batch.offsets(), deadline)
            _end_spans(done.spans, produce_ns, delivered)
            if delivered:
                for labels, count in done.written:
                    metrics.RECORDS_OUT.labels(*labels).inc(count)
            else:
                self._rewound()
        finally:
            if batch in self._pending:
                self._pending.remove(batch)
            if not self._pending and self._paused:
                self.consumer.resume(self._paused)
                self._paused = []

    def _keep_alive(self, batch: _Batch) -> None:
        """Serve the group (heartbeats, max.poll.interval, rebalances) while the model runs;
        paused partitions make poll fetch nothing new."""
        assignment = self.consumer.assignment()
        self.consumer.pause(assignment)
        self._paused.extend(assignment)
        assert batch.future is not None
        while batch.state is BatchState.WORKING and not batch.future.done():
            msg = self.consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                self._stash.append(msg)
            wait([batch.future], timeout=_KEEPALIVE_S)

    # -- model work (runs in the helper thread) ----------------------------------------
    def _process(self, messages: Sequence[Any], fetched_ns: int) -> Processed:
        self._model_s = 0.0
        done = self.logic.process(messages, fetched_ns)
        if self._model_s:
            average = self.model_s_per_batch
            self.model_s_per_batch = (
                self._model_s if average is None else average + 0.2 * (self._model_s - average)
            )
        return done

    def _predictor(self, plan: StepPlan, model: Model | None) -> Predict:
        """How ``plan``'s step calls its model: timed, bounded by its timeout, and added to
        the batch's model time (all of a stage's steps count)."""
        if plan.kind is NodeKind.ASSEMBLER:
            return lambda inputs: inputs  # the joined tensors are the answer
        assert model is not None, "every step runs a model"
        timed = (
            None
            if plan.timeout_s is None
            else TimedCalls(f"model {plan.model}", plan.timeout_s, _MAX_HUNG)
        )
        seconds = metrics.MODEL_SECONDS.labels(plan.pipeline, plan.step)

        def predict(inputs: Arrays) -> Arrays:
            started = time.perf_counter()
            try:
                if timed is None:
                    return model.predict(inputs)
                return timed.call(lambda: model.predict(inputs))
            finally:
                elapsed = time.perf_counter() - started
                self._model_s += elapsed
                seconds.observe(elapsed)

        return predict


def _run_here(fn: Callable[..., T], *args: Any) -> Future[T]:
    """``fn(*args)`` on this thread, as a finished future."""
    future: Future[T] = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as exc:
        future.set_exception(exc)
    return future


def _end_spans(spans: list[Span], produce_ns: int, delivered: bool) -> None:
    end_ns = time.time_ns()
    for span in spans:
        tracing.child_span(span, "produce", produce_ns, end_ns)
        if not delivered:
            span.set_status(StatusCode.ERROR, "rolled back; the batch is redone")
        span.end(end_time=end_ns)


def _fmt(partitions: Sequence[TopicPartition]) -> str:
    return ",".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing"
