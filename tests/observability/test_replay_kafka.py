"""`streamdag errors --replay`: after the fix of a failing step, the failed request is sent
again from its original (not from the step's input) and answered under its request id."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import obs_models
import pytest
from kafka_support import read_results
from obs_support import (
    TRACEPARENT,
    finish,
    request_value,
    run_pipeline,
    send,
    streamdag,
    write_pipeline,
)

from streamdag.kafka.partitioner import partition_for
from streamdag.observability.errors_view import list_failures, replay_failures
from streamdag.observability.inspect import trace_request
from streamdag.pipeline import load_spec

PARTITIONS = 3


@pytest.fixture
def broken() -> Iterator[None]:
    """The right branch fails on b = 70 until the test sets ``obs_models.FIXED``."""
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
    # j7 fails in the middle of the graph (step right). It comes as OIP JSON, from a
    # "gateway" waiting on another outputs partition than its key's.
    reply_to = (partition_for(b"j7", PARTITIONS) + 1) % PARTITIONS
    user = [("x-tenant", b"acme"), ("traceparent", TRACEPARENT.encode())]
    requests = [(f"j{i}", request_value(f"j{i}", i), list(user)) for i in range(10) if i != 7]
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
        first = read_results(bootstrap, name, until=10, timeout=90)
        failed = [r for r in first if r.error is not None]
        assert [(r.request_id, r.error.step) for r in failed if r.error] == [("j7", "right")]
        [failure] = list_failures(spec, bootstrap, since_ms=0)
        assert failure.request_id == "j7"

        obs_models.FIXED = True  # the fix is deployed
        code, out, err = finish(
            streamdag("errors", str(path), "--replay", "--request-id", "j7", "-b", bootstrap)
        )
        assert code == 0, err
        assert out == f"replayed 1 request to streamdag.{name}.inputs: j7\n"

        results = read_results(bootstrap, name, until=11, timeout=90, settle=1.0)
        # Two partitions: the order across them is not the order of time.
        answers = [r for r in results if r.request_id == "j7"]
        assert sorted(r.error is None for r in answers) == [False, True]
        [answer] = [r for r in answers if r.error is None]
        assert answer.arrays["total"].tolist() == [12 * 7 + 5]
        assert answer.arrays["parts"].tolist() == [2]
        assert answer.headers["x-request-id"] == b"j7"
        assert answer.headers["x-tenant"] == b"acme"

        # Sent again since it failed: a second replay skips it.
        again = replay_failures(spec, bootstrap, [failure])
        assert (again.replayed, again.resubmitted, again.missing) == ([], ["j7"], [])

        trace = trace_request(spec, bootstrap, "j7")
    sent = [hop.record for hop in trace.hops if hop.record.role == "inputs"]
    assert len(sent) == 2
    original, replayed = sent
    # The original request, not the record step `right` failed on, was sent again.
    assert replayed.value == original.value == request_value("j7", 7, as_json=True)
    assert replayed.partition == original.partition == partition_for(b"j7", PARTITIONS)
    assert dict(replayed.raw_headers) == {
        "x-request-id": b"j7",
        "x-tenant": b"acme",
        "traceparent": TRACEPARENT.encode(),
        "content-type": b"application/json",
    }
    assert [t.head for t in replayed.tensors] == [(7,)]
    # The answer to the replay went to the key's partition; the first one to the gateway's.
    outputs = [hop.record for hop in trace.hops if hop.record.role == "outputs"]
    assert [(o.partition, o.error is None) for o in outputs] == [
        (reply_to, False),
        (partition_for(b"j7", PARTITIONS), True),
    ]
