"""What a step makes of its input records: the records it writes. No Kafka I/O here.

For each decoded input record a step either runs the model (possibly after a join),
forwards a marker, or reports a failure:

    undecodable / inputs that do not fit   -> failure (errors topic + error reply), no retry
    upstream error marker                  -> error marker forwarded on the step's outputs
                                              (the failing step already answered the caller)
    upstream skip marker, or trigger unmet -> skip marker on the step's outputs; a sole
                                              output step also answers the caller
    result (or completed join)             -> model micro-batch -> results or failures
    a result over the payload store's      -> its value goes to the store; the record
    ``inline_max_bytes``                      carries a stub and ``streamdag-payload``
    a result over ``max_record_bytes``     -> failure (resource_exhausted), no retry: the
    without a payload store                   producer could never write it
    a stub whose object is gone or changed -> failure (data_loss), no retry
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from opentelemetry.trace import Span, StatusCode

from streamdag.engine.batching import Failure, Outcome, Success, run_batch, run_group
from streamdag.engine.envelope import (
    Envelope,
    OutRecord,
    batch_results,
    error_reply,
    marker_record,
    record_size,
    result_records,
)
from streamdag.engine.joins import Completion, JoinState, piece_kind
from streamdag.engine.plan import StepPlan
from streamdag.errors import (
    DeadlineExceeded,
    InvalidInput,
    PayloadLost,
    ResourceExhausted,
    StreamdagError,
)
from streamdag.kafka import headers as h
from streamdag.observability import metrics, tracing
from streamdag.payloads import PayloadStore
from streamdag.pipeline import NodeKind
from streamdag.protocol import decode_response, response_from_bytes
from streamdag.protocol.codec import Columns, response_bytes_many
from streamdag.protocol.datatypes import Arrays

__all__ = ["StepLogic"]

Predict = Callable[[Arrays], Arrays]

log = logging.getLogger("streamdag.engine")


class StepLogic:
    def __init__(
        self, plan: StepPlan, predict: Predict, payloads: PayloadStore | None = None
    ) -> None:
        self.plan = plan
        self.predict = predict
        self.payloads = payloads
        self.labels = (plan.pipeline, plan.step)
        self._e2e = metrics.END_TO_END_SECONDS.labels(*self.labels)
        self._e2e_seconds: list[float] = []  # of this batch's answers, observed together
        self._spans: list[Span] = []
        self._trigger_tensors = {t.tensor for t in plan.triggers}
        # Whether the node has an outputs topic of its own, for the steps downstream: the
        # assembler has none, nor has a step that answers alone.
        self._own = plan.kind is NodeKind.STEP and plan.outputs_topic != plan.replies_topic
        # Where a result goes, as (topic, model name): the node's own outputs, and the
        # pipeline's outputs when it answers the caller.
        self._targets = [(plan.outputs_topic, plan.model)] if self._own else []
        self._final = plan.final_topic
        if self._final is not None:
            self._targets.append((self._final, plan.pipeline))
        self._target_names = tuple(name for _, name in self._targets)
        # Records decoded together can run as they are, as columns (``_by_columns``), when
        # nothing has to be decided for each of them: no join, no trigger.
        self._columnar = plan.join is None and not plan.triggers
        self.join: JoinState | None = None
        if plan.join is not None and plan.changelog_topic is not None:
            self.join = JoinState(
                plan.source_topics.values(),
                plan.join,
                plan.join_window_ms,
                plan.changelog_topic,
                max_bytes=plan.max_record_bytes,
            )

    def due(self, now_ms: float) -> bool:
        """Whether a join window has passed and ``process([])`` has work to do."""
        if self.join is None:
            return False
        return any(
            now_ms - e.first_ms >= self.plan.join_window_ms for e in self.join.entries.values()
        )

    def process(
        self,
        envelopes: Sequence[Envelope],
        now_ms: float | None = None,
        fetched_ns: int | None = None,
    ) -> list[OutRecord]:
        now_ms = time.time() * 1000 if now_ms is None else now_ms
        fetched_ns = time.time_ns() if fetched_ns is None else fetched_ns
        records: list[OutRecord] = []
        runnable: list[tuple[Envelope, Arrays]] = []
        if self._columnar and tracing.tracer() is None:
            envelopes = self._by_columns(envelopes, now_ms, records)
        for env in envelopes:
            if env.problem is not None:
                records += self._failure(env, Failure(env.problem.code, env.problem.message, 0))
            elif self.join is not None:
                source = self.plan.source_topics[env.topic]
                completion = self.join.add(source, env, now_ms)
                if completion is not None:
                    records += self._complete(completion, runnable)
            else:
                records += self._single(env, runnable)
        if self.join is not None:
            for completion in self.join.expire(now_ms):
                records += self._complete(completion, runnable)
        spans = self._open_spans(runnable, fetched_ns)
        model_start = time.time_ns()
        outcomes = run_batch(
            self.predict,
            [inputs for _, inputs in runnable],
            self.plan.retry,
            on_retry=metrics.RETRIES.labels(*self.labels).inc,
            on_call=metrics.BATCH_SIZE.labels(*self.labels).observe,
        )
        if spans:
            self._model_spans(spans, outcomes, fetched_ns, model_start, len(runnable))
        for (env, _), outcome in zip(runnable, outcomes, strict=True):
            records += self._records(env, outcome, now_ms)
        if self._e2e_seconds:
            metrics.observe_many(self._e2e, self._e2e_seconds)
            self._e2e_seconds = []
        if self.join is not None:
            records += self.join.changelog()
        return records

    # -- whole decoded groups, as columns ----------------------------------------------
    def _by_columns(
        self, envelopes: Sequence[Envelope], now_ms: float, records: list[OutRecord]
    ) -> Sequence[Envelope]:
        """Run each group of records decoded together (``Envelope.rows``) as it is: the
        model is called on the group's columns, and the results are encoded together
        (``response_bytes_many``), with no per-record arrays. The records, and the
        failures of a call that failed, are what the record-by-record path would write;
        they go to ``records``. Returns the envelopes left for that path: those of no
        group, and of groups that need a decision per record."""
        groups: dict[int, list[Envelope]] = {}
        rest: list[Envelope] = []
        for env in envelopes:
            rows = env.rows
            if rows is None or env.problem is not None or piece_kind(env) != "result":
                rest.append(env)
            else:
                groups.setdefault(id(rows.columns), []).append(env)
        if not groups:
            return envelopes
        for members in groups.values():
            rows = members[0].rows
            assert rows is not None
            topic = members[0].topic
            if len(members) != rows.columns.members or any(e.topic != topic for e in members):
                rest += members  # some rows belong to records handled one by one
                continue
            try:
                inputs = self.plan.select(self.plan.source_topics[topic], rows.columns.arrays)
            except InvalidInput:
                rest += members  # each record reports it
                continue
            records += self._run_columns(members, inputs, rows.columns, now_ms)
        return rest

    def _run_columns(
        self, members: list[Envelope], inputs: Arrays, columns: Columns, now_ms: float
    ) -> list[OutRecord]:
        counts = columns.counts()
        found = run_group(
            self.predict,
            inputs,
            counts,
            self.plan.retry,
            on_retry=metrics.RETRIES.labels(*self.labels).inc,
            on_call=metrics.BATCH_SIZE.labels(*self.labels).observe,
        )
        records: list[OutRecord] = []
        if isinstance(found, list):  # the call failed: each request ran alone
            for env, outcome in zip(members, found, strict=True):
                records += self._records(env, outcome, now_ms)
        else:
            values = response_bytes_many(
                found,
                counts,
                ids=[env.request_id for env in members],
                model_version=self.plan.version,
                model_names=self._target_names,
            )
            if values is None:  # outputs that are encoded request by request
                start = 0
                for env, rows in zip(members, counts, strict=True):
                    end = start + rows
                    part = {name: array[start:end] for name, array in found.items()}
                    records += self._records(env, Success(part), now_ms)
                    start = end
            else:
                records += self._batch_records(members, values, now_ms)
        if self._e2e_seconds:
            metrics.observe_many(self._e2e, self._e2e_seconds)
            self._e2e_seconds = []
        return records

    def _batch_records(
        self, members: list[Envelope], values: list[list[bytes]], now_ms: float
    ) -> list[OutRecord]:
        """The records of a batch's results, encoded already: in one pass, but for a
        result near a size limit, which ``_records`` writes (to the payload store, or as
        a failure)."""
        plan = self.plan
        limit = plan.max_record_bytes
        if self.payloads is not None:
            limit = min(limit, self.payloads.inline_max_bytes)
        records, left = batch_results(
            members,
            values,
            [topic for topic, _ in self._targets],
            step=plan.step,
            own_topic=plan.outputs_topic if self._own else None,
            reply_topic=plan.replies_topic,
            reply_partition=plan.reply_partition,
            max_bytes=limit,
        )
        if self._final is not None:
            skipped = set(left)
            self._e2e_seconds += [
                max(0.0, (now_ms - env.request_ts_ms) / 1000)
                for k, env in enumerate(members)
                if k not in skipped
            ]
        done = Success({})
        for k in left:
            records += self._records(members[k], done, now_ms, values[k])
        return records

    # -- tracing (only when configured: otherwise tracer() is None and nothing is made) ---
    def take_spans(self) -> list[Span]:
        """The step spans of the last ``process``; the worker ends them once delivered."""
        spans, self._spans = self._spans, []
        return spans

    def _open_spans(self, runnable: list[tuple[Envelope, Arrays]], fetched_ns: int) -> list[Span]:
        if tracing.tracer() is None:
            return []
        spans = []
        for env, _ in runnable:
            span = tracing.start_span(
                f"step {self.plan.step}",
                h.get_header(env.headers, h.TRACEPARENT),
                kind=tracing.SpanKind.CONSUMER,
                start_ns=fetched_ns,
                attributes={
                    "streamdag.pipeline": self.plan.pipeline,
                    "streamdag.step": self.plan.step,
                    "streamdag.request_id": env.request_id,
                    "messaging.source.name": env.topic,
                    "messaging.kafka.partition": env.partition,
                    "messaging.kafka.offset": env.offset,
                },
            )
            assert span is not None
            queued_ns = min(env.request_ts_ms * 1_000_000, fetched_ns)
            tracing.child_span(span, "kafka wait", queued_ns, fetched_ns)
            # What this step writes carries its own span as the parent of the next hop.
            env.headers = [(k, v) for k, v in env.headers if k != h.TRACEPARENT]
            env.headers.append((h.TRACEPARENT, tracing.traceparent_of(span).encode()))
            spans.append(span)
        self._spans = spans
        return spans

    def _model_spans(
        self,
        spans: list[Span],
        outcomes: list[Outcome],
        fetched_ns: int,
        start_ns: int,
        batch: int,
    ) -> None:
        end_ns = time.time_ns()
        for span, outcome in zip(spans, outcomes, strict=True):
            tracing.child_span(span, "batch wait", fetched_ns, start_ns)
            tracing.child_span(
                span,
                "model",
                start_ns,
                end_ns,
                {"streamdag.model": self.plan.model, "streamdag.batch": batch},
            )
            if isinstance(outcome, Failure):
                span.set_status(StatusCode.ERROR, f"{outcome.code}: {outcome.message}")

    # -- one record of a single-source step --------------------------------------------
    def _single(self, env: Envelope, runnable: list[tuple[Envelope, Arrays]]) -> list[OutRecord]:
        kind = piece_kind(env)
        if kind == "error":
            # Downstream steps let go of it; the caller already has the failing step's reply.
            return [self._marker(env, "error")] if self._own else []
        if kind == "skip":
            return self._skip(env)
        source = self.plan.source_topics[env.topic]
        arrays = env.arrays
        try:
            inputs = self.plan.select(source, arrays)
        except InvalidInput as exc:
            return self._failure(env, Failure(exc.code, exc.message, 0))
        if not self._fires({source: arrays}):
            return self._skip(env)
        runnable.append((env, self._drop_triggers(inputs)))
        return []

    # -- a completed join --------------------------------------------------------------
    def _complete(
        self, done: Completion, runnable: list[tuple[Envelope, Arrays]]
    ) -> list[OutRecord]:
        first = done.error_piece or next(iter(done.pieces.values()), None)
        env = Envelope(
            topic=self.plan.outputs_topic,
            partition=done.partition,
            offset=-1,
            request_id=done.request_id,
            headers=first.headers if first is not None else [],
            value=first.value if first is not None else b"",
        )
        ts = h.get_header(env.headers, h.REQUEST_TS)
        env.request_ts_ms = int(ts) if ts and ts.isdigit() else int(time.time() * 1000)
        if done.outcome == "error":
            # Downstream steps let go of it; the caller already has the failing step's reply.
            return [self._marker(env, "error")] if self._own else []
        if done.outcome == "oversized":
            return self._failure(env, Failure(ResourceExhausted.code, done.detail, 0))
        if done.outcome == "expired":
            assert self.join is not None
            missing = ", ".join(self.join.missing(done))
            message = (
                f"join window of {self.plan.join_window_ms:g} ms passed without pieces from "
                f"{missing or 'some inputs'}"
            )
            return self._failure(env, Failure(DeadlineExceeded.code, message, 0))
        if done.outcome == "skip":
            return self._skip(env)
        by_source: dict[str, Arrays] = {}
        selected: dict[str, Arrays] = {}
        try:
            for source, piece in done.pieces.items():
                value = piece.value
                stub = h.get_header(piece.headers, h.PAYLOAD)
                if stub is not None:
                    if self.payloads is None:
                        raise PayloadLost(f"a join piece names a payload ({stub}) but no store")
                    value = self.payloads.claim(stub)
                arrays = decode_response(response_from_bytes(value))
                by_source[source] = arrays
                selected[source] = self.plan.select(source, arrays)
        except (InvalidInput, PayloadLost) as exc:
            return self._failure(env, Failure(exc.code, exc.message, 0))
        inputs: Arrays = {}
        if self.plan.kind is NodeKind.ASSEMBLER:
            # A tensor name that several output steps return comes back as
            # <step>.<tensor> from each of them, whichever piece arrived first.
            seen = Counter(name for arrays in selected.values() for name in arrays)
            for source, arrays in selected.items():
                for name, array in arrays.items():
                    inputs[f"{source}.{name}" if seen[name] > 1 else name] = array
        else:
            for arrays in selected.values():
                inputs.update(arrays)
        if not self._fires(by_source):
            return self._skip(env)
        runnable.append((env, self._drop_triggers(inputs)))
        return []

    # -- triggers ----------------------------------------------------------------------
    def _fires(self, by_source: dict[str, Arrays]) -> bool:
        """A trigger fires when its tensor arrived; a BOOL tensor also has to be all true,
        so a model in a micro-batch can route each row by its value."""
        for ref in self.plan.triggers:
            array = by_source.get(ref.source, {}).get(ref.tensor or "")
            if array is None or (array.dtype == np.bool_ and not bool(np.all(array))):
                return False
        return True

    def _drop_triggers(self, inputs: Arrays) -> Arrays:
        names = self._trigger_tensors
        return {k: v for k, v in inputs.items() if k not in names} if names else inputs

    # -- records out -------------------------------------------------------------------
    def _records(
        self, env: Envelope, outcome: Outcome, now_ms: float, values: list[bytes] | None = None
    ) -> list[OutRecord]:
        """The records of one request's outcome; ``values``: its results, one per target,
        already encoded (by ``response_bytes_many``)."""
        if isinstance(outcome, Failure):
            return self._failure(env, outcome)
        plan = self.plan
        if self._final is not None:
            self._e2e_seconds.append(max(0.0, (now_ms - env.request_ts_ms) / 1000))
        partition = plan.reply_partition(env.headers)
        records = result_records(
            env,
            self._targets,
            outcome.outputs,
            pipeline=plan.pipeline,
            version=plan.version,
            step=plan.step,
            attempts=outcome.attempts,
            # The waiting gateway reads one partition of the pipeline's outputs.
            partitions=None if partition is None else {plan.replies_topic: partition},
            model_names=self._target_names,
            own_topic=plan.outputs_topic if self._own else None,
            values=values,
        )
        # The records of one result differ only in their model name: size the largest.
        largest = (
            records[0] if len(records) == 1 else max(records, key=lambda r: len(r.value or b""))
        )
        size = record_size(largest)
        if self.payloads is not None and size > min(
            self.payloads.inline_max_bytes, plan.max_record_bytes
        ):
            try:
                return self._check_in(records)
            except StreamdagError as exc:
                return self._failure(env, Failure(exc.code, exc.message, outcome.attempts))
        if size > plan.max_record_bytes:
            message = (
                f"the result is {size:,} bytes, over the {plan.max_record_bytes:,}-byte limit "
                "of a Kafka record (message.max.bytes)"
            )
            return self._failure(env, Failure(ResourceExhausted.code, message, outcome.attempts))
        return records

    def _check_in(self, records: list[OutRecord]) -> list[OutRecord]:
        """The records with their values in the payload store and stubs in their place."""
        assert self.payloads is not None
        out = []
        for record in records:
            stub, header = self.payloads.check_in(record.key, record.value or b"")
            out.append(replace(record, value=stub, headers=[*record.headers, (h.PAYLOAD, header)]))
        return out

    def _to_caller(self, env: Envelope, records: list[OutRecord]) -> list[OutRecord]:
        """Put the records for the pipeline's outputs topic on the partition the waiting
        gateway reads (``streamdag-reply-to``), if a gateway waits."""
        partition = self.plan.reply_partition(env.headers)
        if partition is None:
            return records
        return [
            replace(r, partition=partition) if r.topic == self.plan.replies_topic else r
            for r in records
        ]

    def _marker(self, env: Envelope, kind: str, topic: str | None = None) -> OutRecord:
        plan = self.plan
        return marker_record(
            env,
            topic or plan.outputs_topic,
            kind,
            model_name=plan.model or plan.pipeline,
            pipeline=plan.pipeline,
            version=plan.version,
            step=plan.step,
            named=topic is not None,
        )

    def _skip(self, env: Envelope) -> list[OutRecord]:
        out = [self._marker(env, "skip")] if self._own else []
        if self._final is not None:
            # No branch ran for this request: the caller still gets one (empty) answer.
            out.append(self._marker(env, "skip", self._final))
        return self._to_caller(env, out)

    def _failure(self, env: Envelope, failure: Failure) -> list[OutRecord]:
        """The failed record to the errors topic, an error reply to the pipeline's outputs
        (the caller hears at once), and an error marker on the step's outputs so that
        downstream steps and joins let go of the request."""
        plan = self.plan
        info = h.ErrorInfo(failure.code, failure.message, plan.step, failure.attempts)
        metrics.ERRORS.labels(*self.labels, failure.code).inc()
        log.warning(
            "record failed: pipeline=%s step=%s request_id=%s code=%s attempts=%d: %s",
            plan.pipeline,
            plan.step,
            env.request_id,
            failure.code,
            failure.attempts,
            failure.message,
        )

        def reply(topic: str, model_name: str, original: bool = False) -> OutRecord:
            return error_reply(
                env,
                topic,
                info,
                model_name=model_name,
                pipeline=plan.pipeline,
                version=plan.version,
                original=original,
            )

        failed = reply(plan.errors_topic, plan.model or plan.pipeline, original=True)
        size = record_size(failed)
        if size > plan.max_record_bytes:
            # The record as it arrived, with the error's headers, no longer fits: keep the
            # headers (the inputs topic still holds the request for a replay).
            failed.headers.append((h.VALUE_DROPPED, str(len(failed.value or b"")).encode()))
            failed.value = b""
        out = [failed, reply(plan.replies_topic, plan.pipeline)]
        if self._own:  # the steps downstream let go of the request
            out.append(reply(plan.outputs_topic, plan.model))
        return self._to_caller(env, out)
