"""Writing batches' results and committing their input offsets, per delivery guarantee.

Both guarantees commit on an interval (``commit_interval_s``, 100 ms, as Kafka Streams
does under exactly-once), so under load one commit covers several micro-batches, and at
once whenever the worker has nothing else to do (no record fetched and none pending,
before it waits for more; a model still working; a revocation; shutdown), so a lone
request never waits for the interval or for the worker's idle poll.

``exactly_once`` (TransactionalDelivery), one Kafka transaction per commit, in this order:
    1. begin_transaction                    (at the first batch after a commit)
    2. produce every result, error reply, errors-topic and changelog record of each batch
    3. send_offsets_to_transaction(the batches' next offsets, the consumer's group metadata)
    4. commit_transaction
Readers use read_committed, so the batches' records appear together with their offsets or
not at all. Failures by class:
    retriable      (e.g. a timeout)        -> the same call again, until the broker would
                                              abort the transaction (transaction.timeout.ms);
                                              still failing then, as fatal
    abortable      (txn_requires_abort)    -> abort, rewind the consumer, the batches since
                                              the last commit are redone
    fatal          (e.g. producer fenced)  -> new producer (init_transactions, which fences
                                              the old one), rewind, redo
A worker thus rides out a broker restart: init_transactions keeps trying while the
cluster is unreachable (up to 5 minutes), and the rewind reads the committed offsets, so a
batch whose commit did land is not redone.
The worker commits before it waits for a model, so a slow model never holds a transaction
open.

``at_least_once`` (AtLeastOnceDelivery): produce with the idempotent producer; at commit,
flush, and commit the offsets only after every record was acknowledged; a failed delivery
rewinds and redoes the batches since the last commit. Duplicates can appear only after a
crash between flush and commit.

``deliver`` and ``commit`` return False when the batches since the last commit were rolled
back and the consumer rewound: the worker drops what it fetched since and fetches again.
A ``Deadline`` given to them (the worker's revoke path) bounds every wait above, the
replacement of a failed producer included: each takes what is left of it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from streamdag.engine.envelope import OutRecord
from streamdag.engine.timeouts import Deadline
from streamdag.kafka import KafkaConnection, producer_config

__all__ = [
    "COMMIT_INTERVAL_S",
    "AtLeastOnceDelivery",
    "Delivery",
    "TransactionalDelivery",
    "rewind",
]

log = logging.getLogger("streamdag.engine.delivery")

_TIMEOUT_S = 30.0
_HUNG_GRACE_S = 5.0  # past its own deadline, a call this late is taken as hung
_OUTAGE_S = 300.0  # how long a worker waits for an unreachable cluster before it gives up
# Under load, one commit per this interval covers every batch delivered in it.
COMMIT_INTERVAL_S = 0.1


def rewind(
    consumer: Consumer, partitions: Sequence[TopicPartition], deadline: Deadline | None = None
) -> None:
    """Seek ``partitions``, and every other assigned partition, back to their committed
    offsets, so uncommitted work is redone: the worker drops every batch fetched since the
    last commit, those of other partitions too."""
    with contextlib.suppress(KafkaException):
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        partitions = [
            *partitions,
            *(
                TopicPartition(t, p)
                for t, p in assigned - {(tp.topic, tp.partition) for tp in partitions}
            ),
        ]
    if not partitions:
        return
    timeout = _TIMEOUT_S if deadline is None else max(deadline.left(_TIMEOUT_S), 0.1)
    try:
        committed = consumer.committed(list(partitions), timeout=timeout)
    except KafkaException as exc:
        log.warning("cannot read committed offsets to rewind: %s", exc)
        return
    for tp in committed:
        # No committed offset yet: start of the partition, as auto.offset.reset=earliest.
        offset = tp.offset if tp.offset >= 0 else -2
        # A partition no longer assigned is skipped: its new owner starts from the commit.
        with contextlib.suppress(KafkaException):
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))


def _produce(producer: Producer, records: Sequence[OutRecord]) -> None:
    """Produce every record; partition -1 lets the key pick. This runs for every record
    written, so the loop makes no copies and no calls of its own."""
    produce = producer.produce
    for record in records:
        while True:
            try:
                produce(
                    record.topic,
                    record.value,
                    record.key.encode(),
                    -1 if record.partition is None else record.partition,
                    headers=record.headers,  # type: ignore[arg-type]
                )
                break
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain, then retry


def _retry(call: Callable[[float], object], what: str, *, for_s: float) -> None:
    """``call(timeout)`` until it succeeds, a non-retriable error, or ``for_s`` seconds;
    each try gets what is left of them (at most _TIMEOUT_S)."""
    deadline = time.monotonic() + for_s
    attempt = 0
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        try:
            call(max(min(left, _TIMEOUT_S), 0.1))
            return
        except KafkaException as exc:
            error = exc.args[0]
            if not error.retriable() or time.monotonic() >= deadline:
                raise
            log.warning("%s: %s; trying again", what, error.str())
            time.sleep(min(0.05 * 2**attempt, 2.0, max(deadline - time.monotonic(), 0)))


class _Hung(Exception):
    """A librdkafka call that did not return long after its own timeout."""


def _bounded(call: Callable[[], None], seconds: float, what: str) -> None:
    """``call()`` on a helper thread, waited for at most ``seconds``; ``_Hung`` if it has
    not returned by then (it is left behind, with what it holds). Its errors are raised.

    librdkafka 2.16 can block in send_offsets_to_transaction far past the call's timeout
    after the group coordinator went away (confluentinc/librdkafka#5456 and #5511).
    """
    failures: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=target, name=f"kafka-{what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise _Hung(f"{what} has not returned after {seconds:g} s")
    if failures:
        raise failures[0]


class Delivery(ABC):
    """Writes batches' records and commits their offsets; see the module docstring."""

    def __init__(
        self,
        consumer: Consumer,
        commit_interval_s: float | None,
        quiet_topics: Collection[str] = (),
        on_commit: Callable[[float], None] | None = None,
    ) -> None:
        self.consumer = consumer
        self._on_commit = on_commit  # told each commit's seconds
        self.commit_interval_s = (
            COMMIT_INTERVAL_S if commit_interval_s is None else commit_interval_s
        )
        self._last_commit = time.monotonic()
        # Records of these topics (a join's state) are read by nobody waiting for them.
        self._quiet = frozenset(quiet_topics)
        self.awaited = False  # written since the last commit: a record someone waits for

    def _note(self, records: Sequence[OutRecord]) -> None:
        if not self.awaited:
            quiet = self._quiet
            self.awaited = any(r.topic not in quiet for r in records)

    def _committed(self, started: float) -> None:
        if self._on_commit is not None:
            self._on_commit(time.monotonic() - started)

    def due_in(self) -> float:
        """Seconds until the interval's commit is due (0 when it is)."""
        return max(0.0, self._last_commit + self.commit_interval_s - time.monotonic())

    @abstractmethod
    def deliver(
        self,
        records: Sequence[OutRecord],
        offsets: Sequence[TopicPartition],
        deadline: Deadline | None = None,
    ) -> bool:
        """Write one batch's records and take its offsets; commit when the interval passed
        (or ``deadline`` is given). False when the batches since the last commit were
        rolled back and the consumer rewound, so the caller fetches them again."""

    @abstractmethod
    def has_uncommitted(self) -> bool:
        """Whether anything was delivered since the last commit."""

    @abstractmethod
    def commit(self, deadline: Deadline | None = None) -> bool:
        """Commit what ``deliver`` wrote since the last commit; False as for ``deliver``."""

    def _due(self, deadline: Deadline | None) -> bool:
        return deadline is not None or time.monotonic() - self._last_commit >= (
            self.commit_interval_s
        )

    @abstractmethod
    def close(self) -> None: ...


class TransactionalDelivery(Delivery):
    def __init__(
        self,
        consumer: Consumer,
        kafka: KafkaConnection,
        transactional_id: str,
        *,
        commit_interval_s: float | None = None,
        quiet_topics: Collection[str] = (),
        on_commit: Callable[[float], None] | None = None,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
        **config: Any,
    ) -> None:
        super().__init__(consumer, commit_interval_s, quiet_topics, on_commit)
        self._producer_factory = producer_factory
        self._config = producer_config(
            kafka,
            transactional_id=transactional_id,
            client_id=transactional_id,
            **{"transaction.timeout.ms": 10_000, **config},
        )
        self._transaction_timeout_s = float(self._config["transaction.timeout.ms"]) / 1000
        self._producer = self._new_producer()
        self._open = False  # a transaction is begun and not yet committed
        self._offsets: dict[tuple[str, int], int] = {}  # of the batches in it

    def _new_producer(self, deadline: Deadline | None = None) -> Producer:
        producer = self._producer_factory(self._config)
        # Fences any earlier producer with this transactional id and aborts its open
        # transaction, so a restarted worker never sees a zombie's half-written batch.
        # While the cluster is unreachable this keeps trying, up to _OUTAGE_S.
        for_s = _OUTAGE_S if deadline is None else deadline.left(_OUTAGE_S)
        with contextlib.suppress(KafkaException):
            # Learn the cluster first: librdkafka 2.16 looks for the transaction
            # coordinator while its bootstrap connection gives way to the broker's own,
            # finds no broker up half of the time, and asks again only 500 ms later.
            producer.list_topics(timeout=min(for_s, _TIMEOUT_S))
        _retry(producer.init_transactions, "init_transactions", for_s=for_s)
        return producer

    def deliver(
        self,
        records: Sequence[OutRecord],
        offsets: Sequence[TopicPartition],
        deadline: Deadline | None = None,
    ) -> bool:
        for tp in offsets:
            self._offsets[(tp.topic, tp.partition)] = tp.offset
        try:
            if not self._open:
                self._producer.begin_transaction()
                self._open = True
            _produce(self._producer, records)
        except KafkaException as exc:
            return self._rolled_back(exc, deadline)
        self._note(records)
        if self._due(deadline):
            return self.commit(deadline)
        return True

    def has_uncommitted(self) -> bool:
        return self._open

    def commit(self, deadline: Deadline | None = None) -> bool:
        started = self._last_commit = time.monotonic()
        if not self._open:
            return True
        producer = self._producer
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._offsets.items()]
        # The broker aborts a transaction older than transaction.timeout.ms: retrying its
        # calls past that could only fail, so that is as long as they are retried.
        for_s = self._transaction_timeout_s
        if deadline is not None:
            for_s = deadline.left(for_s)
        try:
            if offsets:
                metadata = self.consumer.consumer_group_metadata()
                _bounded(
                    lambda: _retry(
                        lambda timeout: producer.send_offsets_to_transaction(
                            offsets, metadata, timeout
                        ),
                        "send_offsets_to_transaction",
                        for_s=for_s,
                    ),
                    for_s + _HUNG_GRACE_S,
                    "send_offsets_to_transaction",
                )
            _retry(producer.commit_transaction, "commit_transaction", for_s=for_s)
        except _Hung as exc:
            log.error("%s; giving this producer up for a new one", exc)
            # Fences the hung one, which is never touched again.
            self._producer = self._new_producer(deadline)
            self._forget()
            rewind(self.consumer, offsets, deadline)
            return False
        except KafkaException as exc:
            return self._rolled_back(exc, deadline)
        self._forget()
        self._committed(started)
        return True

    def _rolled_back(self, exc: KafkaException, deadline: Deadline | None) -> bool:
        error = exc.args[0]
        log.warning("transaction failed (%s); its batches will be redone", error.str())
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._offsets.items()]
        if error.txn_requires_abort():
            self._abort(deadline)
        else:
            # Fatal (fenced), or still failing when the broker gives the transaction
            # up: a new producer fences this one, and whatever it left open is aborted
            # unless it was committed; the rewind below reads which.
            self._recreate(deadline)
        self._forget()
        rewind(self.consumer, offsets, deadline)
        return False

    def _forget(self) -> None:
        self._open = False
        self._offsets = {}
        self.awaited = False

    def _abort(self, deadline: Deadline | None) -> None:
        try:
            timeout = _TIMEOUT_S if deadline is None else max(deadline.left(_TIMEOUT_S), 0.1)
            self._producer.abort_transaction(timeout)
        except KafkaException as exc:
            log.warning("abort failed (%s); recreating the producer", exc.args[0].str())
            self._recreate(deadline)

    def _recreate(self, deadline: Deadline | None) -> None:
        """A fatal error (fenced, e.g. after the broker lost track of the transaction) ends
        this producer; a new one with the same transactional id takes over."""
        with contextlib.suppress(KafkaException):  # a producer in a fatal state raises
            self._producer.flush(0)
        self._producer = self._new_producer(deadline)

    def close(self) -> None:
        self._producer.flush(_TIMEOUT_S)


class AtLeastOnceDelivery(Delivery):
    """Produce now, commit offsets at commit: a flush then waits for the acknowledgement
    of every batch produced since the last commit, so the wait is shared by many batches.
    Offsets are committed only after that flush succeeded."""

    def __init__(
        self,
        consumer: Consumer,
        kafka: KafkaConnection,
        client_id: str,
        *,
        commit_interval_s: float | None = None,
        quiet_topics: Collection[str] = (),
        on_commit: Callable[[float], None] | None = None,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
        **config: Any,
    ) -> None:
        super().__init__(consumer, commit_interval_s, quiet_topics, on_commit)
        # Reports only for failed records: a Python callback per success would contend
        # for the GIL with the model thread and slow every flush.
        self._producer = producer_factory(
            producer_config(
                kafka,
                client_id=client_id,
                **{
                    "delivery.report.only.error": True,
                    "on_delivery": self._on_delivery,
                    **config,
                },
            )
        )
        self._uncommitted: dict[tuple[str, int], int] = {}
        self._failed: list[str] = []

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failed.append(err.str())

    def deliver(
        self,
        records: Sequence[OutRecord],
        offsets: Sequence[TopicPartition],
        deadline: Deadline | None = None,
    ) -> bool:
        _produce(self._producer, records)
        self._producer.poll(0)
        self._note(records)
        for tp in offsets:
            self._uncommitted[(tp.topic, tp.partition)] = tp.offset
        if self._due(deadline):
            return self.commit(deadline)
        return True

    def has_uncommitted(self) -> bool:
        return bool(self._uncommitted) or len(self._producer) > 0

    def commit(self, deadline: Deadline | None = None) -> bool:
        """Wait for every produced record, then commit the offsets of their batches; on a
        failed delivery rewind instead, so those batches are done again.

        The offsets are committed without waiting for the broker's answer, unless there
        is a ``deadline`` (the partitions are being revoked) or the worker stops: a commit
        that fails then only means its batches may be done again, as this guarantee
        allows, and the worker goes on with the next batch meanwhile."""
        return self._commit(deadline, wait=deadline is not None)

    def _commit(self, deadline: Deadline | None, *, wait: bool) -> bool:
        started = self._last_commit = time.monotonic()
        self.awaited = False
        if not self._uncommitted and not len(self._producer):
            return True
        unsent = self._producer.flush(_TIMEOUT_S if deadline is None else deadline.left(_TIMEOUT_S))
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._uncommitted.items()]
        self._uncommitted = {}
        if self._failed or unsent:
            log.warning(
                "delivery failed (%s); the batches since the last commit will be redone",
                self._failed[0] if self._failed else f"{unsent} unsent",
            )
            self._failed = []
            rewind(self.consumer, offsets, deadline)
            return False
        if not offsets:
            return True
        try:
            if wait:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            # The results are out; whoever owns the partitions next may repeat them, which
            # this guarantee allows.
            log.warning("offset commit failed (%s)", exc.args[0].str())
        self._committed(started)
        return True

    def close(self) -> None:
        self._commit(None, wait=True)


def new_transactional_id(group_id: str, instance_id: str | None) -> str:
    """A stable id when an instance id is given (a restart fences its predecessor at once),
    else a fresh one (a killed worker's open transaction then times out on the broker)."""
    return f"{group_id}.{instance_id or uuid.uuid4().hex[:12]}"
