"""How each delivery guarantee handles every class of Kafka error at every step, with a
scripted fake producer and consumer (tests/engine/fake_kafka.py).

What a user relies on, checked after every case: a batch's results and its offsets are
committed together or not at all (exactly_once); offsets are never committed before their
results were acknowledged (at_least_once); and a batch that was not committed is rewound,
so delivering it again leaves each result on the cluster once (exactly_once)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import TopicPartition

from streamdag.engine import delivery as d
from streamdag.engine.envelope import OutRecord
from streamdag.engine.timeouts import Deadline
from streamdag.kafka import KafkaConnection
from tests.engine.fake_kafka import (
    HANG,
    FakeCluster,
    FakeConsumer,
    abortable,
    fatal,
    retriable,
)

KAFKA = KafkaConnection.of("127.0.0.1:1")
TOPIC = "p.in"
RECORDS = [OutRecord("p.out", f"r{i}", f"v{i}".encode(), []) for i in range(3)]
OFFSETS = [TopicPartition(TOPIC, 0, 13), TopicPartition(TOPIC, 1, 7)]
COMMITTED_BEFORE = {(TOPIC, 0): 10, (TOPIC, 1): 5}
STEPS = ("begin_transaction", "produce", "send_offsets_to_transaction", "commit_transaction")


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    cluster = FakeCluster(offsets=dict(COMMITTED_BEFORE))
    yield cluster
    cluster.released.set()


def transactional(cluster: FakeCluster, **config: object) -> tuple[d.Delivery, FakeConsumer]:
    consumer = FakeConsumer(cluster)
    delivery = d.TransactionalDelivery(
        consumer,  # type: ignore[arg-type]
        KAFKA,
        "group.txn",
        commit_interval_s=config.pop("commit_interval_s", 0.0),  # type: ignore[arg-type]
        producer_factory=cluster.producer,  # type: ignore[arg-type]
        **config,
    )
    return delivery, consumer


def at_least_once(cluster: FakeCluster) -> tuple[d.AtLeastOnceDelivery, FakeConsumer]:
    consumer = FakeConsumer(cluster)
    delivery = d.AtLeastOnceDelivery(
        consumer,  # type: ignore[arg-type]
        KAFKA,
        "group",
        commit_interval_s=3600,  # commits only when asked, so each test says when
        producer_factory=cluster.producer,  # type: ignore[arg-type]
    )
    return delivery, consumer


def values(cluster: FakeCluster) -> list[bytes]:
    return sorted(value for _, _, value in cluster.records)


def assert_committed_once(cluster: FakeCluster) -> None:
    assert values(cluster) == [r.value for r in RECORDS]
    assert cluster.offsets == {(TOPIC, 0): 13, (TOPIC, 1): 7}


def assert_rolled_back_and_rewound(cluster: FakeCluster, consumer: FakeConsumer) -> None:
    assert cluster.records == []
    assert cluster.offsets == COMMITTED_BEFORE
    assert consumer.positions == COMMITTED_BEFORE  # the batch will be fetched again


def redeliver(delivery: d.Delivery) -> None:
    """What the worker does after a rollback: the same batch, again, until committed."""
    for _ in range(5):
        if delivery.deliver(RECORDS, OFFSETS):
            return
    raise AssertionError("the batch was never committed")


# exactly_once


def test_a_batch_commits_its_results_and_offsets_in_one_transaction(cluster: FakeCluster) -> None:
    delivery, consumer = transactional(cluster)
    assert delivery.deliver(RECORDS, OFFSETS) is True
    assert_committed_once(cluster)
    assert consumer.seeks == []
    assert cluster.calls.index("send_offsets_to_transaction") < cluster.calls.index(
        "commit_transaction"
    )


@pytest.mark.parametrize("step", ["send_offsets_to_transaction", "commit_transaction"])
def test_a_retriable_error_is_retried_and_the_batch_commits_once(
    cluster: FakeCluster, step: str
) -> None:
    cluster.fail(step, retriable(), retriable())
    delivery, consumer = transactional(cluster)
    assert delivery.deliver(RECORDS, OFFSETS) is True
    assert_committed_once(cluster)
    assert cluster.calls.count(step) == 3
    assert consumer.seeks == []


@pytest.mark.parametrize("step", STEPS)
def test_an_abortable_error_aborts_rewinds_and_a_redo_commits_once(
    cluster: FakeCluster, step: str
) -> None:
    cluster.fail(step, abortable())
    delivery, consumer = transactional(cluster)
    assert delivery.deliver(RECORDS, OFFSETS) is False
    assert_rolled_back_and_rewound(cluster, consumer)
    assert "abort_transaction" in cluster.calls
    assert len(cluster.producers) == 1  # an abort keeps the producer
    redeliver(delivery)
    assert_committed_once(cluster)


@pytest.mark.parametrize("step", STEPS)
def test_a_fatal_error_replaces_the_producer_rewinds_and_a_redo_commits_once(
    cluster: FakeCluster, step: str
) -> None:
    cluster.fail(step, fatal())
    delivery, consumer = transactional(cluster)
    assert delivery.deliver(RECORDS, OFFSETS) is False
    assert_rolled_back_and_rewound(cluster, consumer)
    assert len(cluster.producers) == 2
    assert cluster.producers[0].fenced  # the new producer's init_transactions fenced it
    assert "abort_transaction" not in cluster.calls
    redeliver(delivery)
    assert_committed_once(cluster)


def test_a_retriable_error_past_the_transaction_timeout_gives_the_batch_up(
    cluster: FakeCluster,
) -> None:
    cluster.fail("commit_transaction", *[retriable()] * 1000)
    delivery, consumer = transactional(cluster, **{"transaction.timeout.ms": 300})
    assert delivery.deliver(RECORDS, OFFSETS) is False
    assert_rolled_back_and_rewound(cluster, consumer)
    assert len(cluster.producers) == 2  # what the old one left open is aborted by fencing
    cluster.faults.clear()
    redeliver(delivery)
    assert_committed_once(cluster)


def test_a_failing_abort_replaces_the_producer(cluster: FakeCluster) -> None:
    cluster.fail("commit_transaction", abortable())
    cluster.fail("abort_transaction", fatal())
    delivery, consumer = transactional(cluster)
    assert delivery.deliver(RECORDS, OFFSETS) is False
    assert_rolled_back_and_rewound(cluster, consumer)
    assert len(cluster.producers) == 2
    redeliver(delivery)
    assert_committed_once(cluster)


def test_a_hung_send_offsets_is_left_behind_for_a_new_producer(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(d, "_HUNG_GRACE_S", 0.2)
    cluster.fail("send_offsets_to_transaction", HANG)
    delivery, consumer = transactional(cluster, **{"transaction.timeout.ms": 200})
    assert delivery.deliver(RECORDS, OFFSETS) is False
    assert_rolled_back_and_rewound(cluster, consumer)
    assert len(cluster.producers) == 2 and cluster.producers[0].fenced
    cluster.released.set()  # the hung call returns at last: its producer is fenced
    redeliver(delivery)
    assert_committed_once(cluster)


def test_an_unreachable_cluster_at_start_is_waited_for(cluster: FakeCluster) -> None:
    cluster.fail("init_transactions", retriable("all brokers down"), retriable())
    delivery, _ = transactional(cluster)
    assert cluster.calls.count("init_transactions") == 3
    assert delivery.deliver(RECORDS, OFFSETS) is True
    assert_committed_once(cluster)


def test_a_batch_without_offsets_still_commits_its_records(cluster: FakeCluster) -> None:
    delivery, _ = transactional(cluster)
    assert delivery.deliver(RECORDS, []) is True
    assert values(cluster) == [r.value for r in RECORDS]
    assert "send_offsets_to_transaction" not in cluster.calls
    assert cluster.offsets == COMMITTED_BEFORE


def test_a_full_local_queue_waits_and_loses_no_record(cluster: FakeCluster) -> None:
    cluster.fail("produce", BufferError("queue full"), BufferError("queue full"))
    delivery, _ = transactional(cluster)
    assert delivery.deliver(RECORDS, OFFSETS) is True
    assert_committed_once(cluster)


def test_a_rewind_that_cannot_read_the_commits_leaves_the_position(
    cluster: FakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    cluster.fail("commit_transaction", abortable())
    cluster.fail("committed", retriable("coordinator unavailable"))
    delivery, consumer = transactional(cluster)
    with caplog.at_level(logging.WARNING):
        assert delivery.deliver(RECORDS, OFFSETS) is False
    assert consumer.seeks == []
    assert "cannot read committed offsets" in caplog.text


# at_least_once


def test_offsets_are_committed_only_after_every_result_was_acknowledged(
    cluster: FakeCluster,
) -> None:
    delivery, _ = at_least_once(cluster)
    assert delivery.deliver(RECORDS, OFFSETS) is True
    assert cluster.offsets == COMMITTED_BEFORE  # not yet: within the commit interval
    assert delivery.commit() is True
    assert cluster.calls.index("flush") < cluster.calls.index("commit")
    assert_committed_once(cluster)


def test_a_failed_delivery_report_rewinds_instead_of_committing(cluster: FakeCluster) -> None:
    delivery, consumer = at_least_once(cluster)
    delivery.deliver(RECORDS, OFFSETS)
    cluster.producers[0].failed_reports.append(retriable("message timed out").args[0])
    assert delivery.commit() is False
    assert cluster.offsets == COMMITTED_BEFORE
    assert consumer.positions == COMMITTED_BEFORE
    assert "commit" not in cluster.calls


def test_records_unsent_after_the_flush_rewind_instead_of_committing(
    cluster: FakeCluster,
) -> None:
    delivery, consumer = at_least_once(cluster)
    delivery.deliver(RECORDS, OFFSETS)
    cluster.producers[0].unsent = 2
    assert delivery.commit() is False
    assert cluster.offsets == COMMITTED_BEFORE
    assert consumer.positions == COMMITTED_BEFORE
    # The redo is committed once its results are out.
    delivery.deliver(RECORDS, OFFSETS)
    assert delivery.commit() is True
    assert cluster.offsets == {(TOPIC, 0): 13, (TOPIC, 1): 7}


def test_a_failed_offset_commit_keeps_the_results(
    cluster: FakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    cluster.fail("commit", retriable("rebalance in progress"))
    delivery, consumer = at_least_once(cluster)
    delivery.deliver(RECORDS, OFFSETS)
    with caplog.at_level(logging.WARNING):
        assert delivery.commit() is True  # the results are out; a repeat is allowed
    assert values(cluster) == [r.value for r in RECORDS]
    assert cluster.offsets == COMMITTED_BEFORE
    assert consumer.seeks == []
    assert "offset commit failed" in caplog.text


def test_the_commit_interval_groups_batches_under_one_flush(cluster: FakeCluster) -> None:
    delivery, _ = at_least_once(cluster)
    later = [TopicPartition(TOPIC, 0, 20)]
    delivery.deliver(RECORDS, OFFSETS)
    delivery.deliver(RECORDS, later)
    assert "flush" not in cluster.calls
    delivery.commit_interval_s = 0.0
    delivery.deliver([], [])
    assert cluster.calls.count("flush") == 1
    assert cluster.offsets == {(TOPIC, 0): 20, (TOPIC, 1): 7}


def test_a_revoke_deadline_bounds_the_retries_and_the_batch_is_redone(
    cluster: FakeCluster,
) -> None:
    cluster.fail("commit_transaction", *[retriable()] * 1000)
    delivery, consumer = transactional(cluster)  # transaction timeout: 10 s
    started = time.monotonic()
    assert delivery.deliver(RECORDS, OFFSETS, Deadline(0.5)) is False
    assert time.monotonic() - started < 3.0
    assert_rolled_back_and_rewound(cluster, consumer)


def test_at_least_once_under_a_revoke_deadline_commits_at_once(cluster: FakeCluster) -> None:
    delivery, _ = at_least_once(cluster)
    assert delivery.deliver(RECORDS, OFFSETS, Deadline(5.0)) is True
    assert_committed_once(cluster)


# Several batches per commit


def batches(n: int) -> list[tuple[list[OutRecord], list[TopicPartition]]]:
    return [
        (
            [OutRecord("p.out", f"b{i}", f"b{i}".encode(), [])],
            [TopicPartition(TOPIC, i % 2, 20 + i)],
        )
        for i in range(n)
    ]


def test_batches_within_the_interval_share_one_transaction(cluster: FakeCluster) -> None:
    delivery, _ = transactional(cluster, commit_interval_s=3600)
    for records, offsets in batches(4):
        assert delivery.deliver(records, offsets) is True
    assert cluster.records == [] and cluster.offsets == COMMITTED_BEFORE  # not yet visible
    assert delivery.commit() is True
    assert values(cluster) == [b"b0", b"b1", b"b2", b"b3"]
    assert cluster.offsets == {(TOPIC, 0): 22, (TOPIC, 1): 23}
    assert cluster.calls.count("begin_transaction") == 1
    assert cluster.calls.count("commit_transaction") == 1
    assert delivery.commit() is True  # nothing open: nothing to do
    assert cluster.calls.count("commit_transaction") == 1


def test_a_failed_commit_rolls_back_every_batch_since_the_last_and_rewinds_all(
    cluster: FakeCluster,
) -> None:
    delivery, consumer = transactional(cluster, commit_interval_s=3600)
    # A partition this worker fetched from but has delivered nothing of yet: the worker
    # drops those fetched batches too, so it must be rewound as well.
    consumer.assigned = [(TOPIC, 0), (TOPIC, 1), (TOPIC, 2)]
    cluster.offsets[(TOPIC, 2)] = 4
    for records, offsets in batches(3):
        delivery.deliver(records, offsets)
    cluster.fail("commit_transaction", abortable())
    assert delivery.commit() is False
    assert cluster.records == []
    assert consumer.positions == {(TOPIC, 0): 10, (TOPIC, 1): 5, (TOPIC, 2): 4}
    for records, offsets in batches(3):
        delivery.deliver(records, offsets)
    assert delivery.commit() is True
    assert values(cluster) == [b"b0", b"b1", b"b2"]


def test_the_interval_passing_commits_on_the_next_batch(cluster: FakeCluster) -> None:
    delivery, _ = transactional(cluster, commit_interval_s=0.05)
    first, second = batches(2)
    delivery.deliver(*first)
    assert cluster.records == []
    time.sleep(0.06)
    assert delivery.deliver(*second) is True
    assert values(cluster) == [b"b0", b"b1"]


# What the worker commits when it goes idle


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_only_a_join_state_written_is_not_awaited_until_a_result_is(
    cluster: FakeCluster, guarantee: str
) -> None:
    """An idle worker commits at once what someone waits for; a join's state alone waits
    for the request's next piece (or the interval), so it costs no commit of its own."""
    consumer = FakeConsumer(cluster)
    kind = d.TransactionalDelivery if guarantee == "exactly_once" else d.AtLeastOnceDelivery
    delivery = kind(
        consumer,  # type: ignore[arg-type]
        KAFKA,
        "group.join",
        commit_interval_s=3600,
        quiet_topics=["p.join.join-state"],
        producer_factory=cluster.producer,  # type: ignore[arg-type]
    )
    state = [OutRecord("p.join.join-state", "r0", b"piece", [])]
    assert delivery.deliver(state, OFFSETS[:1]) is True
    assert delivery.has_uncommitted() and not delivery.awaited
    assert delivery.deliver([*state, *RECORDS], OFFSETS[1:]) is True
    assert delivery.awaited
    assert delivery.commit() is True
    assert not delivery.has_uncommitted() and not delivery.awaited
    assert cluster.offsets == {(TOPIC, 0): 13, (TOPIC, 1): 7}
