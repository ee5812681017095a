"""The admin requests behind a pipeline's readiness, in a child process of their own.

librdkafka 2.16's admin requests can abort the whole process when a broker dies while
they are in flight (``rd_kafka_enq_once_del_source_return: Assertion `eonce->refcnt > 0'
failed``, seen on a 3-node cluster whose leader was SIGKILLed). A gateway must ride out a
broker's death, so the requests run in this child: an abort ends only the child, and
``GroupProbe`` starts another at the next check.

Protocol (JSON lines): the parent writes the client properties once, then one request per
check; the child answers each with one line.

    request   {"groups": [...], "offsets": {group: [[topic, partition], ...]},
               "partitions": [[topic, partition], ...], "timeout_s": 5,
               "stage_prefixes": [prefix, ...]}
    answer    {"members": {group: n}, "committed": {group: [[topic, p, offset], ...]},
               "ends": [[topic, p, offset], ...], "starts": [...]}
              or {"error": "..."}

``members`` also counts every group whose id is a ``stage_prefixes`` prefix followed by
names joined by ``+``: the consumer groups of fused stages (``run --fuse``), which any
combination of steps may form.

The child ends when its input does (the parent closed it, or died).

    python -m streamdag.kafka.group_probe

It lives in ``streamdag.kafka``, whose imports are few, so the child starts in a fraction of
a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # OffsetSpec: not in its stubs
    AdminClient,
    OffsetSpec,
)

from streamdag.errors import KafkaOperationError
from streamdag.kafka.config import KAFKA_CLIENT_LOGGER, admin_config
from streamdag.kafka.connection import KafkaConnection

__all__ = ["GroupProbe", "Groups"]

TP = tuple[str, int]
STAGE_JOINER = "+"  # between the step names of a fused stage's group (pipeline/plan.py)


class Groups:
    """What one probe read: members per group, committed offsets per group, and the last
    committed (read_committed) and earliest offset of each partition."""

    def __init__(self, answer: Mapping[str, Any]) -> None:
        self.members: dict[str, int] = dict(answer["members"])
        self.committed: dict[str, dict[TP, int]] = {
            group: {(t, p): o for t, p, o in rows} for group, rows in answer["committed"].items()
        }
        self.ends: dict[TP, int] = {(t, p): o for t, p, o in answer["ends"]}
        self.starts: dict[TP, int] = {(t, p): o for t, p, o in answer["starts"]}


class GroupProbe:
    """A child process that answers ``read`` with what the cluster says of consumer groups;
    replaced when it dies or stops answering. Used by one thread at a time."""

    def __init__(self, kafka: KafkaConnection) -> None:
        # Secrets go through the child's input, never its command line or environment.
        self._properties = {k: v for k, v in admin_config(kafka).items() if k != "logger"}
        self._cluster = str(kafka)
        self._child: subprocess.Popen[bytes] | None = None

    def read(
        self,
        groups: Sequence[str],
        offsets: Mapping[str, Sequence[TP]],
        partitions: Sequence[TP],
        timeout_s: float,
        stage_prefixes: Sequence[str] = (),
    ) -> Groups:
        request = {
            "groups": list(groups),
            "stage_prefixes": list(stage_prefixes),
            "offsets": {g: [list(tp) for tp in tps] for g, tps in offsets.items()},
            "partitions": [list(tp) for tp in partitions],
            "timeout_s": timeout_s,
            "cluster": self._cluster,
        }
        child = self._running()
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write(json.dumps(request).encode() + b"\n")
            child.stdin.flush()
            # Each of the child's waits is bounded by timeout_s; four of them in a row.
            line = _readline(child.stdout, 4 * timeout_s + 5)
        except OSError as exc:
            self.close()
            raise KafkaOperationError(f"the consumer-group probe ended: {exc}") from exc
        if not line:
            code = child.poll()
            self.close()
            raise KafkaOperationError(
                "the consumer-group probe ended"
                + ("" if code is None else f" with status {code}")
                + " (started again at the next check)"
            )
        answer = json.loads(line)
        if "error" in answer:
            raise KafkaOperationError(answer["error"])
        return Groups(answer)

    def start(self) -> None:
        """Start the child ahead of the first ``read`` (it takes a moment to import)."""
        self._running()

    def _running(self) -> subprocess.Popen[bytes]:
        if self._child is not None and self._child.poll() is None:
            return self._child
        self.close()
        child = subprocess.Popen(
            [sys.executable, "-m", "streamdag.kafka.group_probe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert child.stdin is not None
        child.stdin.write(json.dumps(self._properties).encode() + b"\n")
        child.stdin.flush()
        self._child = child
        return child

    def close(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        with contextlib.suppress(OSError):
            assert child.stdin is not None
            child.stdin.close()  # the child ends at the end of its input
        try:
            child.wait(2)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
        if child.stdout is not None:
            child.stdout.close()


def _readline(stream: IO[bytes], timeout_s: float) -> bytes:
    """A line of ``stream``, or b"" when none came within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    fd = stream.fileno()
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return b""
        chunk = os.read(fd, 65536)
        if not chunk:
            return b""
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            return b"".join(chunks)


# -- the child ---------------------------------------------------------------------------
def _answer(admin: Any, request: Mapping[str, Any]) -> dict[str, Any]:
    timeout = float(request["timeout_s"])
    partitions: list[TP] = [(t, p) for t, p in request["partitions"]]
    try:
        groups = list(request["groups"])
        prefixes = tuple(request.get("stage_prefixes") or ())
        if prefixes:
            listed = admin.list_consumer_groups(request_timeout=timeout).result(timeout)
            groups += [
                g.group_id
                for g in listed.valid
                if g.group_id.startswith(prefixes)
                and any(_is_stage(g.group_id, prefix) for prefix in prefixes)
            ]
        described = admin.describe_consumer_groups(groups, request_timeout=timeout)
        asked = {
            group: admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in tps])],
                request_timeout=timeout,
            )[group]
            for group, tps in request["offsets"].items()
        }
        ends = _offsets(admin, partitions, "latest", timeout)
        starts = _offsets(admin, partitions, "earliest", timeout)
        members = {g: _members(f, timeout) for g, f in described.items()}
        committed = {g: _committed(f.result(timeout)) for g, f in asked.items()}
    except (KafkaException, TimeoutError) as exc:
        return {"error": f"consumer groups on Kafka at {request.get('cluster', '')}: {exc}"}
    return {"members": members, "committed": committed, "ends": ends, "starts": starts}


def _is_stage(group: str, prefix: str) -> bool:
    rest = group.removeprefix(prefix)
    return rest != group and STAGE_JOINER in rest and "." not in rest


def _offsets(admin: Any, tps: Sequence[TP], which: str, timeout: float) -> list[list[Any]]:
    if not tps:
        return []
    spec = OffsetSpec.latest() if which == "latest" else OffsetSpec.earliest()  # type: ignore[no-untyped-call]
    asked = admin.list_offsets(
        {TopicPartition(t, p): spec for t, p in tps},
        isolation_level=IsolationLevel.READ_COMMITTED,
        request_timeout=timeout,
    )
    out = []
    for tp, future in asked.items():
        try:
            out.append([tp.topic, tp.partition, future.result(timeout).offset])
        except KafkaException:
            continue  # a topic not created yet: nothing waits on it
    return out


def _members(described: Any, timeout: float) -> int:
    try:
        description = described.result(timeout)
    except KafkaException as exc:
        if exc.args[0].name() == "GROUP_ID_NOT_FOUND":  # no worker ever joined
            return 0
        raise
    return len(description.members or [])


def _committed(result: Any) -> list[list[Any]]:
    return [
        [tp.topic, tp.partition, tp.offset]
        for tp in result.topic_partitions or []
        if tp.error is None
    ]


def main() -> None:
    first = sys.stdin.buffer.readline()
    if not first:
        return
    config: dict[str, Any] = {**json.loads(first), "logger": KAFKA_CLIENT_LOGGER}
    admin = AdminClient(config)
    for line in sys.stdin.buffer:
        answer = _answer(admin, json.loads(line))
        try:
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            return  # the parent is gone


if __name__ == "__main__":
    main()
