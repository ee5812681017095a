"""`streamdag errors --replay`: after the fix of a failing step, the failed request is sent
again from its original (not from the step's input) and answered under its request id."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import obs_models
import pytest
from kafka_support import read_results, run_pipeline
from obs_support import (
    TRACEPARENT,
    finish,
    request_value,
    send,
    streamdag,
    write_pipeline,
)

from streamdag.kafka.partitioner import partition_for
from streamdag.observability.errors_view import list_failures, replay_failures
from streamdag.observability.inspect import trace_request
from streamdag.pipeline import compile_plan, load_spec

PARTITIONS = 3


@pytest.fixture
def broken() -> Iterator[None]:
    """The right branch fails on b = 70 and 90 until the test sets ``obs_models.FIXED``."""
    obs_models.FIXED = False
    try:
        yield
    finally:
        obs_models.FIXED = False


@pytest.mark.usefixtures("broken")
def test_replay_after_the_fix_answers_under_the_same_request_id(
    bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    name = unique_name("p")
    path = write_pipeline(tmp_path, name, right="fixable_right")
    spec = load_spec(path)
    # j7 and j9 fail in the middle of the graph (step right). j7 comes as OIP JSON, from a
    # "gateway" waiting on another outputs partition than its key's; j9 from a client left
    # at librdkafka's default partitioner, so it is not on its key's partition.
    reply_to = (partition_for(b"j7", PARTITIONS) + 1) % PARTITIONS
    # A credential of the caller's: hidden by every view, re-sent as it was by a replay.
    user = [
        ("x-tenant", b"acme"),
        ("x-api-key", b"s3cret"),
        ("traceparent", TRACEPARENT.encode()),
    ]
    requests = [(f"j{i}", request_value(f"j{i}", i), list(user)) for i in range(9) if i != 7]
    requests.append(
        (
            "j7",
            request_value("j7", 7, as_json=True),
            [
                *user,
                ("content-type", b"application/json"),
                ("x-request-id", b"j7"),
                ("streamdag-reply-to", str(reply_to).encode()),
                # A gateway stamps when the request came in; a replay drops it.
                ("streamdag-request-ts", str(int(time.time() * 1000)).encode()),
            ],
        )
    )
    with run_pipeline(spec, bootstrap):
        send(bootstrap, name, requests)
        stray = send(bootstrap, name, [("j9", request_value("j9", 9), list(user))], murmur2=False)
        assert stray["j9"] != partition_for(b"j9", PARTITIONS)
        first = read_results(bootstrap, name, until=10, timeout=90)
        failed = sorted((r.request_id, r.error.step) for r in first if r.error is not None)
        assert failed == [("j7", "right"), ("j9", "right")]
        failures = list_failures(compile_plan(spec), bootstrap, since_ms=0)
        assert sorted(f.request_id for f in failures) == ["j7", "j9"]

        obs_models.FIXED = True  # the fix is deployed
        code, out, err = finish(
            streamdag("errors", str(path), "--replay", "-r", "j7", "-r", "j9", "-b", bootstrap)
        )
        assert code == 0, err
        head, _, ids = out.strip().partition(": ")
        assert head == f"replayed 2 requests to streamdag.{name}.inputs"
        assert sorted(ids.split(", ")) == ["j7", "j9"]

        results = read_results(bootstrap, name, until=12, timeout=90, settle=1.0)
        for rid, x in (("j7", 7), ("j9", 9)):
            # Several partitions: the order across them is not the order of time.
            answers = [r for r in results if r.request_id == rid]
            assert sorted(r.error is None for r in answers) == [False, True], rid
            [answer] = [r for r in answers if r.error is None]
            assert answer.arrays["total"].tolist() == [12 * x + 5]
            assert answer.arrays["parts"].tolist() == [2]
            assert answer.headers["x-tenant"] == b"acme"
            assert answer.headers["x-api-key"] == b"s3cret"

        # Sent again since they failed: a second replay skips them.
        again = replay_failures(compile_plan(spec), bootstrap, failures)
        assert (again.replayed, sorted(again.resubmitted), again.missing) == ([], ["j7", "j9"], [])

        trace = trace_request(compile_plan(spec), bootstrap, "j7")
        stray_trace = trace_request(compile_plan(spec), bootstrap, "j9")
    sent = [hop.record for hop in trace.hops if hop.record.role == "inputs"]
    assert len(sent) == 2
    [j7] = [f.record for f in failures if f.request_id == "j7"]
    original, replayed = sent
    # The original request, not the record step `right` failed on, was sent again.
    assert replayed.value == original.value == request_value("j7", 7, as_json=True)
    assert replayed.partition == original.partition == partition_for(b"j7", PARTITIONS)
    assert dict(replayed.raw_headers) == {
        "x-request-id": b"j7",
        "x-tenant": b"acme",
        "x-api-key": b"s3cret",
        "traceparent": TRACEPARENT.encode(),
        "content-type": b"application/json",
        # Which failure it replays: the views mark the request's records as a replay's.
        "streamdag-replayed": f"{j7.topic}[{j7.partition}]@{j7.offset}".encode(),
    }
    assert replayed.replayed and not original.replayed
    assert replayed.headers["x-api-key"] == "[redacted]"
    assert [t.head for t in replayed.tensors] == [(7,)]
    # The answer to the replay went to the key's partition; the first one to the gateway's.
    outputs = [hop.record for hop in trace.hops if hop.record.role == "outputs"]
    assert [(o.partition, o.error is None) for o in outputs] == [
        (reply_to, False),
        (partition_for(b"j7", PARTITIONS), True),
    ]
    # j9 was found where its client put it, and sent again to its key's partition.
    sent = [hop.record for hop in stray_trace.hops if hop.record.role == "inputs"]
    assert [r.partition for r in sent] == [stray["j9"], partition_for(b"j9", PARTITIONS)]
    assert sent[0].value == sent[1].value == request_value("j9", 9)
