"""The readiness probe's child process: it reads the consumer groups from a real broker,
and one that dies (as librdkafka's abort would end it) is replaced at the next read."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from confluent_kafka import Consumer

from streamdag.kafka import KafkaConnection, consumer_config
from streamdag.kafka.group_probe import GroupProbe


def test_a_killed_probe_is_replaced_at_the_next_read(
    bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topic = topic_factory(2)
    group = unique_name("group")
    member = Consumer(consumer_config(bootstrap, group))
    member.subscribe([topic])
    probe = GroupProbe(KafkaConnection.of(bootstrap))
    try:
        for _ in range(100):  # until the member has joined
            member.poll(0.1)
            if member.assignment():
                break
        tps = [(topic, 0), (topic, 1)]
        first = probe.read([group], {group: tps}, tps, 5.0)
        assert first.members == {group: 1}
        assert first.ends == {(topic, 0): 0, (topic, 1): 0}
        child = probe._child
        assert child is not None
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)

        again = probe.read([group], {group: tps}, tps, 5.0)
        assert again.members == {group: 1}
        assert probe._child is not None and probe._child.pid != child.pid
    finally:
        probe.close()
        member.close()
    assert probe._child is None


def test_the_groups_of_fused_stages_are_read_too(
    bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topic = topic_factory(1)
    pipeline = unique_name("p")
    stage = f"streamdag.{pipeline}.a+b"
    member = Consumer(consumer_config(bootstrap, stage))
    member.subscribe([topic])
    probe = GroupProbe(KafkaConnection.of(bootstrap))
    try:
        for _ in range(100):  # until the member has joined
            member.poll(0.1)
            if member.assignment():
                break
        own = f"streamdag.{pipeline}.a"
        read = probe.read([own], {}, [], 5.0, stage_prefixes=[f"streamdag.{pipeline}."])
        assert read.members == {own: 0, stage: 1}
    finally:
        probe.close()
        member.close()
