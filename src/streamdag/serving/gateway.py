"""Request-reply over Kafka: the ``PipelineGateway`` behind ``/v2/pipelines/<p>/infer``.

Each gateway instance joins consumer group ``streamdag.<p>.gateway`` on the pipeline's
outputs topic (``streamdag.<a>+<b>.gateway`` on all of them, when it serves pipelines
``a`` and ``b``) and so owns some of its partitions. A request is produced to the inputs
topic (key and ``x-request-id`` = the request id) with header ``streamdag-reply-to`` naming
one of the instance's partitions; the step that writes the final reply puts it on that
partition. So every instance reads only its own replies, and several run side by side.

Replies are matched to calls, not to request ids: every call gets a token of its own in
header ``streamdag-call``, which the steps carry to the reply. A caller that times out and
sends the same request id again makes a new request; the late reply of the first call is
never taken for the second.

A request too large for a Kafka record goes to the payload store, if the gateway has one:
the record carries a stub and ``streamdag-payload``; a reply that comes as a stub is read
from the store off the event loop before it is decoded.

Asynchronous jobs carry no reply partition: their results land where the request id's
key hash puts them, and ``job`` reads that one partition of the outputs topic, from the
job's submission (or ``job_retention`` ago, after a restart) — a job outlives the gateway
that took it. A job's call token starts with ``job-``, so a job id finds only a job's
result, never the answer of a synchronous call with the same id, however long ago it was
submitted; and, asked for a caller, only a result whose ``streamdag-caller`` (which the
door sets and every step carries) names that caller.

Two readinesses, each checked on a thread of its own: the gateway's (``ready``: Kafka
answers a metadata probe every second and every pipeline has a reply partition here), which
is the server's; and each pipeline's (``readiness``: every step's consumer group has a
member, read every few seconds by ``StepWatch``), which is the pipeline's model-ready.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from opentelemetry.trace import StatusCode

from streamdag.errors import (
    DeadlineExceeded,
    NotFound,
    PayloadLost,
    PipelineNotFound,
    StreamdagError,
    Unavailable,
    error_for_code,
)
from streamdag.kafka import (
    KafkaConnection,
    consumer_config,
    ensure_topics,
    list_topics,
    producer_config,
)
from streamdag.kafka import headers as h
from streamdag.kafka.partitioner import partition_for
from streamdag.observability import metrics, tracing
from streamdag.payloads import PayloadStore
from streamdag.pipeline import PipelinePlan, gateway_group
from streamdag.protocol import ModelInferRequest, ModelInferResponse, response_from_bytes
from streamdag.serving.gateway_api import PipelineReadiness
from streamdag.serving.request_record import must_check_in, request_headers
from streamdag.serving.step_watch import StepWatch

__all__ = ["KafkaGateway"]

log = logging.getLogger("streamdag.serving.gateway")

Reply = tuple[ModelInferResponse, dict[str, str]]
# The start of a job's call token (``streamdag-call``); a synchronous call's is hex alone.
JOB_CALL_PREFIX = "job-"


@dataclass
class _Pipeline:
    plan: PipelinePlan
    partitions: list[int] = field(default_factory=list)  # outputs partitions we own
    turn: itertools.count[int] = field(default_factory=itertools.count)
    waiting: dict[str, asyncio.Future[Reply]] = field(default_factory=dict)  # by call
    # job id -> caller (None: no tokens) -> (submit time, call token) of its latest
    # submission through this gateway
    submitted: dict[str, dict[str | None, tuple[float, str]]] = field(default_factory=dict)


class KafkaGateway:
    def __init__(
        self,
        plans: Sequence[PipelinePlan],
        kafka: KafkaConnection | str,
        *,
        job_retention_s: float = 86_400,
        payloads: PayloadStore | None = None,
    ) -> None:
        self.kafka = KafkaConnection.of(kafka)
        self.payloads = payloads
        self._claims: set[asyncio.Task[None]] = set()
        self.job_retention_s = job_retention_s
        self._pipelines = {p.name: _Pipeline(p) for p in plans}
        self._by_topic = {p.outputs_topic: p.name for p in plans}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._assigned = threading.Event()
        self._reachable = threading.Event()  # set while Kafka answers the probe
        self._steps = StepWatch(plans, self.kafka)

    def pipelines(self) -> list[str]:
        return list(self._pipelines)

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._pipelines:
            self._steps.prepare()
        # The pipelines' workers may not have run yet: make sure their topics exist.
        for pipe in self._pipelines.values():
            await asyncio.to_thread(ensure_topics, self.kafka, pipe.plan.topics())
        # A topic created a moment ago may not be in the cluster metadata yet; subscribing
        # before it is would leave it out of the group's first assignment.
        await asyncio.to_thread(_wait_for_topics, self.kafka, list(self._by_topic))
        # No linger: each request is sent alone and its caller waits for it.
        no_linger: dict[str, Any] = {"linger.ms": 0}
        self._producer = Producer(
            producer_config(self.kafka, client_id="streamdag-gateway", **no_linger)
        )
        if not self._pipelines:
            return
        group = gateway_group(self._pipelines)
        self._consumer = Consumer(
            consumer_config(
                self.kafka,
                group,
                client_id="streamdag-gateway",
                **{"auto.offset.reset": "latest", "session.timeout.ms": 6000},
            )
        )
        self._consumer.subscribe(
            list(self._by_topic), on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        self._thread = threading.Thread(
            target=self._read_replies, name="gateway-replies", daemon=True
        )
        self._thread.start()
        # Requests need a reply partition: wait until the group gave us some.
        if not await asyncio.to_thread(self._assigned.wait, 30.0):
            raise Unavailable("the gateway got no partitions of the outputs topics within 30 s")
        self._watch_kafka()
        # Known before the first request or probe: the steps' workers may not run yet.
        await asyncio.to_thread(self._steps.check)
        threading.Thread(
            target=self._steps.watch, args=(self._stopping,), name="gateway-steps", daemon=True
        ).start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30.0)
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush, 10.0)
        for pipe in self._pipelines.values():
            for future in pipe.waiting.values():
                if not future.done():
                    future.set_exception(Unavailable("the gateway is shutting down"))

    # -- the reply reader (its own thread) ----------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Start each partition at its current end, fixed now, before any request names it
        # as reply partition: a lazily resolved "latest" could skip a fast reply.
        starts = [
            TopicPartition(tp.topic, tp.partition, _end_offset(consumer, tp)) for tp in partitions
        ]
        consumer.incremental_assign(starts)
        for tp in partitions:
            pipe = self._pipelines[self._by_topic[tp.topic]]
            pipe.partitions = sorted({*pipe.partitions, tp.partition})
        log.info(
            "gateway: reply partitions %s",
            {name: pipe.partitions for name, pipe in self._pipelines.items()},
        )
        # A cooperative rebalance may assign nothing in its first round: ready only once
        # every pipeline has a partition to be answered on.
        if all(pipe.partitions for pipe in self._pipelines.values()):
            self._assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            pipe = self._pipelines[self._by_topic[tp.topic]]
            pipe.partitions = [p for p in pipe.partitions if p != tp.partition]

    def _read_replies(self) -> None:
        assert self._consumer is not None and self._loop is not None
        try:
            while not self._stopping.is_set():
                msg = self._consumer.poll(0.1)
                if msg is None or msg.error() is not None:
                    continue
                call = h.get_header(msg.headers(), h.CALL)
                if call is None:
                    continue
                pipe = self._pipelines[self._by_topic[msg.topic() or ""]]
                future = pipe.waiting.get(call)
                if future is None:
                    continue
                if h.get_header(msg.headers(), h.PAYLOAD) is not None:
                    self._loop.call_soon_threadsafe(self._claim_reply, future, msg.headers())
                else:
                    self._loop.call_soon_threadsafe(_resolve, future, msg.value(), msg.headers())
        finally:
            self._consumer.close()

    # -- the claim check ---------------------------------------------------------------
    def _claim(self, headers: Any) -> bytes:
        """The value a stub's ``streamdag-payload`` names (blocking: call off the loop)."""
        stub = h.get_header(headers, h.PAYLOAD) or ""
        if self.payloads is None:
            raise PayloadLost(
                f"the reply is in a payload store ({stub}), but the gateway has none: set "
                "--payload-store or STREAMDAG_PAYLOAD_STORE"
            )
        return self.payloads.claim(stub)

    def _claim_reply(self, future: asyncio.Future[Reply], headers: Any) -> None:
        async def claim() -> None:
            try:
                value = await asyncio.to_thread(self._claim, headers)
            except StreamdagError as exc:
                if not future.done():
                    future.set_exception(exc)
                return
            _resolve(future, value, headers)

        task = asyncio.ensure_future(claim())
        self._claims.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._claims.discard)

    async def _encode(
        self, request: ModelInferRequest, headers: dict[str, str]
    ) -> tuple[bytes, bytes | None]:
        """The request's record value, and its ``streamdag-payload`` header when the value
        went to the payload store (in a thread: the store may be remote)."""
        value = request.SerializeToString()
        if self.payloads is None or not must_check_in(
            value, headers, self.payloads, self.kafka.max_record_bytes
        ):
            return value, None
        stub, header = await asyncio.to_thread(self.payloads.check_in, request.id, value)
        return stub, header

    # -- requests ----------------------------------------------------------------------
    def _pipe(self, pipeline: str) -> _Pipeline:
        try:
            return self._pipelines[pipeline]
        except KeyError:
            raise PipelineNotFound(pipeline) from None

    def _produce(
        self,
        pipe: _Pipeline,
        request: ModelInferRequest,
        encoded: tuple[bytes, bytes | None],
        headers: dict[str, str],
        reply_to: int | None,
        call: str,
    ) -> None:
        assert self._producer is not None
        value, stub = encoded
        out = request_headers(request.id, headers, call=call, reply_to=reply_to, payload=stub)
        try:
            self._producer.produce(
                pipe.plan.inputs_topic,
                value,
                request.id.encode(),
                headers=out,
            )
        except (BufferError, KafkaException) as exc:
            raise Unavailable(f"cannot send request {request.id} to Kafka: {exc}") from exc
        self._producer.poll(0)

    async def infer(
        self,
        pipeline: str,
        request: ModelInferRequest,
        *,
        timeout: float | None,
        headers: dict[str, str],
    ) -> Reply:
        pipe = self._pipe(pipeline)
        rid = request.id
        if not pipe.partitions:
            raise Unavailable(f"pipeline {pipeline}: the gateway owns no reply partition yet")
        reply_to = pipe.partitions[next(pipe.turn) % len(pipe.partitions)]
        assert self._loop is not None
        future: asyncio.Future[Reply] = self._loop.create_future()
        call = uuid.uuid4().hex
        pipe.waiting[call] = future
        deadline = timeout if timeout is not None else pipe.plan.timeout_ms / 1000
        span, headers = _traced(pipeline, rid, headers)
        in_flight = metrics.GATEWAY_IN_FLIGHT.labels(pipeline)
        in_flight.inc()
        try:
            encoded = await self._encode(request, headers)
            # produce only queues the record (librdkafka sends it from its own thread), so
            # it runs right here: a hop through a thread pool would delay every request.
            self._produce(pipe, request, encoded, headers, reply_to, call)
            return await asyncio.wait_for(future, deadline)
        except TimeoutError:
            error = DeadlineExceeded(
                f"no reply for request {rid} from pipeline {pipeline} within {deadline:g} s"
            )
            if span is not None:
                span.set_status(StatusCode.ERROR, error.message)
            raise error from None
        except StreamdagError as exc:
            if span is not None:
                span.set_status(StatusCode.ERROR, f"{exc.code}: {exc.message}")
            raise
        finally:
            in_flight.dec()
            pipe.waiting.pop(call, None)
            if span is not None:
                span.end()

    async def submit(
        self, pipeline: str, request: ModelInferRequest, *, headers: dict[str, str]
    ) -> str:
        pipe = self._pipe(pipeline)
        call = JOB_CALL_PREFIX + uuid.uuid4().hex
        by_caller = pipe.submitted.setdefault(request.id, {})
        by_caller[headers.get(h.CALLER)] = (time.time(), call)
        span, headers = _traced(pipeline, request.id, headers)
        self._produce(pipe, request, await self._encode(request, headers), headers, None, call)
        if span is not None:
            span.end()
        await asyncio.to_thread(self._flush)
        return request.id

    def _flush(self) -> None:
        assert self._producer is not None
        if self._producer.flush(10.0):
            raise Unavailable("the request could not be written to Kafka within 10 s")

    async def job(
        self, pipeline: str, request_id: str, *, caller: str | None = None
    ) -> ModelInferResponse | None:
        pipe = self._pipe(pipeline)
        submissions = pipe.submitted.get(request_id, {})
        latest = (
            max(submissions.values(), default=None) if caller is None else submissions.get(caller)
        )
        if latest is not None:
            since, call = latest
            match = _of_call(call)
        else:  # taken by another gateway, or before a restart
            since, match = time.time() - self.job_retention_s, _of_job(caller)
        found = await asyncio.to_thread(self._find_reply, pipe, request_id, since, match)
        if found is None:
            if latest is not None or await asyncio.to_thread(
                self._was_submitted, pipe, request_id, since, match
            ):
                return None
            raise NotFound(f"no job {request_id} in pipeline {pipeline}")
        value, headers = found
        if h.get_header(headers, h.PAYLOAD) is not None and h.get_header(headers, h.ERROR) is None:
            value = await asyncio.to_thread(self._claim, headers)
        response, _ = _decode(value, headers)
        return response

    def _scan(self, topic: str, key: bytes, partitions: int, since: float, match: _Match) -> Any:
        """The last record with ``key`` whose headers ``match`` in its partition of
        ``topic`` since ``since``."""
        partition = partition_for(key, partitions)
        extra: dict[str, Any] = {"enable.partition.eof": True}
        consumer = Consumer(consumer_config(self.kafka, "streamdag-gateway-jobs", **extra))
        try:
            start = consumer.offsets_for_times(
                [TopicPartition(topic, partition, int(since * 1000) - 1000)], timeout=10
            )[0]
            if start.offset < 0:
                return None
            consumer.assign([start])
            found = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error() is not None:
                    break  # end of the partition
                if msg.key() == key and match(msg.headers()):
                    found = (msg.value(), msg.headers())
            return found
        finally:
            consumer.close()

    def _find_reply(self, pipe: _Pipeline, request_id: str, since: float, match: _Match) -> Any:
        return self._scan(
            pipe.plan.outputs_topic, request_id.encode(), pipe.plan.partitions, since, match
        )

    def _was_submitted(self, pipe: _Pipeline, request_id: str, since: float, match: _Match) -> bool:
        key = request_id.encode()
        found = self._scan(pipe.plan.inputs_topic, key, pipe.plan.partitions, since, match)
        return found is not None

    def max_record_bytes(self) -> int:
        """The largest request the gateway can send: the producer's ``message.max.bytes``
        (librdkafka's default: 1,000,000); no bound with a payload store."""
        return sys.maxsize if self.payloads is not None else self.kafka.max_record_bytes

    # -- readiness (its own thread) -----------------------------------------------------
    # Kafka counts as reachable while a metadata request for every topic of the pipelines,
    # sent every PROBE_EVERY_S through the producer, is answered within PROBE_TIMEOUT_S
    # and names a leader for each partition. A dead broker thus shows within about 3 s,
    # its return within about 1 s of the connection's.
    PROBE_EVERY_S = 1.0
    PROBE_TIMEOUT_S = 2.0

    def ready(self) -> bool:
        """Whether pipeline requests can be taken: Kafka answered the last probe and every
        pipeline has a reply partition here. Cheap; never blocks."""
        return self._reachable.is_set() and all(p.partitions for p in self._pipelines.values())

    def readiness(self, pipeline: str) -> PipelineReadiness:
        """Whether ``pipeline``'s steps have workers, as last checked (see ``StepWatch``)."""
        self._pipe(pipeline)
        return self._steps.readiness(pipeline)

    def _watch_kafka(self) -> None:
        """Probe Kafka on a thread of its own until ``stop``; ``start`` just reached it."""
        self._reachable.set()
        threading.Thread(target=self._probe_kafka, name="gateway-probe", daemon=True).start()

    def _probe_kafka(self) -> None:
        topics = [
            topic
            for pipe in self._pipelines.values()
            for topic in (pipe.plan.inputs_topic, pipe.plan.outputs_topic)
        ]
        assert self._producer is not None
        while not self._stopping.wait(self.PROBE_EVERY_S):
            self._producer.poll(0)  # the producer's own log lines, as they happen
            problem = self._probe(topics)
            if problem is None and not self._reachable.is_set():
                log.info("gateway: Kafka answers again")
                self._reachable.set()
            elif problem is not None and self._reachable.is_set():
                log.warning("gateway: Kafka does not answer (%s); not ready", problem)
                self._reachable.clear()

    def _probe(self, topics: list[str]) -> str | None:
        """Why Kafka cannot serve ``topics`` now, or None when it can."""
        assert self._producer is not None
        for topic in topics:
            try:
                metadata = self._producer.list_topics(topic, timeout=self.PROBE_TIMEOUT_S)
            except KafkaException as exc:
                return f"metadata of {topic}: {exc.args[0].str()}"
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                return f"topic {topic}: {found.error.str() if found else 'missing'}"
            if any(p.leader < 0 for p in found.partitions.values()):
                return f"topic {topic} has a partition without a leader"
        return None


_Match = Callable[[Any], bool]  # over a record's headers


def _of_call(call: str) -> _Match:
    """Records of one call."""
    return lambda headers: h.get_header(headers, h.CALL) == call


def _of_job(caller: str | None) -> _Match:
    """Records of any job (of ``caller``'s jobs, if given): never a synchronous call's."""

    def match(headers: Any) -> bool:
        call = h.get_header(headers, h.CALL) or ""
        if not call.startswith(JOB_CALL_PREFIX):
            return False
        return caller is None or h.get_header(headers, h.CALLER) == caller

    return match


def _traced(pipeline: str, rid: str, headers: dict[str, str]) -> tuple[Any, dict[str, str]]:
    """A span for the request at the front door (continuing the caller's ``traceparent``)
    and the headers that make the pipeline's steps its children; no span when tracing is
    off."""
    span = tracing.start_span(
        f"pipeline {pipeline}",
        headers.get(h.TRACEPARENT),
        kind=tracing.SpanKind.SERVER,
        attributes={"streamdag.pipeline": pipeline, "streamdag.request_id": rid},
    )
    if span is None:
        return None, headers
    return span, {**headers, h.TRACEPARENT: tracing.traceparent_of(span)}


def _wait_for_topics(kafka: KafkaConnection, topics: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        counts = list_topics(kafka)
        if all(counts.get(t) for t in topics):
            return
        if time.monotonic() > deadline:
            missing = [t for t in topics if not counts.get(t)]
            raise Unavailable(f"topics {', '.join(missing)} did not appear within {timeout:g} s")
        time.sleep(0.2)


def _end_offset(consumer: Consumer, tp: TopicPartition, timeout: float = 30.0) -> int:
    """The partition's high watermark, retried while a new topic's leader is elected."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, high = consumer.get_watermark_offsets(tp, timeout=5.0)
            return int(high)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _decode(value: bytes | None, headers: Any) -> Reply:
    error = h.get_header(headers, h.ERROR)
    reply_headers = {
        k: (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in headers or []
        if v is not None and k.startswith("x-")
    }
    if error is not None:
        info = h.ErrorInfo.decode(error)
        raise error_for_code(info.code, f"step {info.step}: {info.message}", step=info.step)
    return response_from_bytes(value or b""), reply_headers


def _resolve(future: asyncio.Future[Reply], value: bytes | None, headers: Any) -> None:
    if future.done():
        return
    try:
        future.set_result(_decode(value, headers))
    except StreamdagError as exc:
        future.set_exception(exc)
