"""`streamdag inspect` and `streamdag errors` on a fan-out/join pipeline that ran on the
real broker: one request found on every topic it crossed, in order of time; a failed
request shown with the step that failed it; the errors topic listed; the CLI's output and
its one-line errors."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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

from streamdag.broker import BrokerInfo
from streamdag.errors import ConfigError, NotFound
from streamdag.kafka.partitioner import partition_for
from streamdag.observability.errors_view import list_failures
from streamdag.observability.inspect import Trace, last_records, trace_request
from streamdag.pipeline import PipelinePlan, PipelineSpec, compile_plan, load_spec

PARTITIONS = 3
FAILING = "j7"  # b = 70: the right branch fails it
KEY_PARTITION = partition_for(FAILING.encode(), PARTITIONS)
# j7 is sent as a gateway would, waiting on another partition of the outputs topic.
REPLY_TO = (KEY_PARTITION + 1) % PARTITIONS
# j10 comes from a client left at librdkafka's default partitioner: its request is not on
# the key's partition (murmur2) of the inputs topic, its other records are.
STRAY = "j10"
IDS = [f"j{i}" for i in range(11)]


@dataclass(frozen=True)
class Ran:
    spec: PipelineSpec
    path: Path
    bootstrap: str
    stray_partition: int  # where the inputs record of STRAY landed

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def plan(self) -> PipelinePlan:
        return compile_plan(self.spec)


@pytest.fixture(scope="module")
def ran(kafka_broker: BrokerInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    """Requests j0..j10 through the pipeline; its workers keep running meanwhile."""
    bootstrap = kafka_broker.bootstrap
    name = f"p-inspect-{uuid.uuid4().hex[:8]}"
    path = write_pipeline(tmp_path_factory.mktemp("inspect"), name, right="failing_right")
    spec = load_spec(path)
    with run_pipeline(spec, bootstrap):
        user = [("x-tenant", b"acme"), ("traceparent", TRACEPARENT.encode())]
        requests = []
        for i in range(10):
            rid = f"j{i}"
            extra = [("streamdag-reply-to", str(REPLY_TO).encode())] if rid == FAILING else []
            requests.append(
                (rid, request_value(rid, i), [*user, ("x-request-id", rid.encode()), *extra])
            )
        send(bootstrap, name, requests)
        stray = [(STRAY, request_value(STRAY, 10), [*user, ("x-request-id", STRAY.encode())])]
        landed = send(bootstrap, name, stray, murmur2=False)
        assert landed[STRAY] != partition_for(STRAY.encode(), PARTITIONS)
        results = read_results(bootstrap, name, until=len(IDS), timeout=90)
        assert sorted(r.request_id for r in results) == sorted(IDS)
        yield Ran(spec, path, bootstrap, landed[STRAY])


def _trace(ran: Ran, rid: str, *, until: str | set[str], timeout: float = 30.0) -> Trace:
    """The trace of ``rid`` once records of ``until`` are in it (joins answer later)."""
    wanted = {until} if isinstance(until, str) else until
    deadline = time.monotonic() + timeout
    while True:
        trace = trace_request(ran.plan, ran.bootstrap, rid)
        if wanted <= {hop.record.label for hop in trace.hops} or time.monotonic() > deadline:
            return trace
        time.sleep(0.5)


def test_trace_follows_a_request_through_every_topic_in_order(ran: Ran) -> None:
    trace = _trace(ran, "j3", until="outputs")
    labels = [hop.record.label for hop in trace.hops]
    assert labels[:2] == ["inputs", "split"]
    assert sorted(labels[2:4]) == ["left", "right"]
    # both answers alone: its result is written once, to the outputs topic, naming it.
    assert labels[4:] == ["outputs"]
    assert trace.hops[-1].record.step == "both"
    p = ran.name
    assert [hop.record.topic for hop in trace.hops] == [
        f"streamdag.{p}.inputs",
        f"streamdag.{p}.split.outputs",
        *(f"streamdag.{p}.{s}.outputs" for s in labels[2:4]),
        f"streamdag.{p}.outputs",
    ]
    # Only the key's partition was read, and every record was there.
    assert {hop.record.partition for hop in trace.hops} == {partition_for(b"j3", PARTITIONS)}
    times = [hop.record.timestamp_ms for hop in trace.hops]
    assert times == sorted(times)
    assert trace.hops[0].since_previous_ms is None
    assert [hop.since_previous_ms for hop in trace.hops[1:]] == [
        b - a for a, b in itertools.pairwise(times)
    ]
    assert trace.elapsed_ms == times[-1] - times[0]
    for hop in trace.hops:
        assert hop.record.headers["x-tenant"] == "acme"
        assert hop.record.headers["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]
        assert hop.record.error is None and not hop.record.skipped
    first = trace.hops[0].record
    assert [(t.name, t.datatype, t.shape, t.head) for t in first.tensors] == [
        ("x", "INT64", (1,), (3,))
    ]
    split = trace.hops[1].record
    assert split.step == "split"
    assert {t.name: t.head for t in split.tensors} == {"a": (4,), "b": (30,)}
    final = trace.hops[-1].record
    assert {t.name: t.head for t in final.tensors} == {"total": (41,), "parts": (2,)}


def test_trace_shows_where_a_request_failed(ran: Ran) -> None:
    trace = _trace(ran, FAILING, until={"errors", "outputs"})
    by_label = {hop.record.label: hop.record for hop in trace.hops}
    assert set(by_label) == {"inputs", "split", "left", "right", "errors", "outputs"}
    failed = by_label["errors"]
    assert failed.error is not None
    assert (failed.error.step, failed.error.code, failed.error.attempts) == (
        "right",
        "model_error",
        2,
    )
    assert "right branch cannot take 70" in failed.error.message
    # The errors topic holds the record the step failed on, with where it was read.
    assert failed.source is not None
    assert failed.source.topic == f"streamdag.{ran.name}.split.outputs"
    assert failed.source.offset == by_label["split"].offset
    assert {t.name: t.head for t in failed.tensors} == {"a": (8,), "b": (70,)}
    # No step reads both, so it forwards no error marker: the caller has right's reply.
    for label in ("right", "outputs"):  # error marker, error reply
        record = by_label[label]
        assert record.error is not None and record.error.step == "right", label
        assert record.tensors == ()
    # The error reply went where the "gateway" waits, not to the key's partition.
    assert by_label["outputs"].partition == REPLY_TO != KEY_PARTITION
    assert by_label["inputs"].headers["streamdag-reply-to"] == str(REPLY_TO)


def test_trace_finds_a_request_its_client_put_on_another_partition(ran: Ran) -> None:
    trace = _trace(ran, STRAY, until="outputs")
    where = {hop.record.label: hop.record.partition for hop in trace.hops}
    assert list(where) == ["inputs", "split", *list(where)[2:4], "outputs"]
    assert where.pop("inputs") == ran.stray_partition
    assert set(where.values()) == {partition_for(STRAY.encode(), PARTITIONS)}
    assert trace.hops[0].record.tensors[0].head == (10,)


def test_last_records_of_a_topic(ran: Ran) -> None:
    lefts = last_records(ran.plan, ran.bootstrap, 4, source="left")
    assert len(lefts) == 4
    assert {r.topic for r in lefts} == {f"streamdag.{ran.name}.left.outputs"}
    assert [r.timestamp_ms for r in lefts] == sorted(r.timestamp_ms for r in lefts)
    for r in lefts:
        i = int(r.request_id[1:])
        assert [(t.name, t.head) for t in r.tensors] == [("l", (2 * (i + 1),))]
    everything = last_records(ran.plan, ran.bootstrap, 100, source="inputs")
    assert sorted(r.request_id for r in everything) == sorted(IDS)
    [error] = last_records(ran.plan, ran.bootstrap, 5, source="errors")
    assert error.request_id == FAILING and error.error is not None
    with pytest.raises(ConfigError, match=r"unknown step 'nope'.*split, left, right, both"):
        last_records(ran.plan, ran.bootstrap, 1, source="nope")


def test_unknown_request_is_not_found(ran: Ran) -> None:
    with pytest.raises(NotFound, match=rf"request nope not found in streamdag\.{ran.name}\.\*"):
        trace_request(ran.plan, ran.bootstrap, "nope")


def test_errors_lists_the_failed_request(ran: Ran) -> None:
    [failure] = list_failures(ran.plan, ran.bootstrap)
    assert failure.request_id == FAILING
    assert (failure.error.step, failure.error.code, failure.error.attempts) == (
        "right",
        "model_error",
        2,
    )
    assert failure.record.source is not None
    assert failure.record.source.topic == f"streamdag.{ran.name}.split.outputs"
    assert list_failures(ran.plan, ran.bootstrap, code="model_error", step="right") == [failure]
    assert list_failures(ran.plan, ran.bootstrap, request_ids=[FAILING]) == [failure]
    assert list_failures(ran.plan, ran.bootstrap, step="left") == []
    assert list_failures(ran.plan, ran.bootstrap, code="deadline_exceeded") == []
    assert list_failures(ran.plan, ran.bootstrap, request_ids=["j3"]) == []
    with pytest.raises(ConfigError, match="unknown step 'nope'"):
        list_failures(ran.plan, ran.bootstrap, step="nope")


def test_cli_prints_the_path_and_the_failures(ran: Ran) -> None:
    b = ["--bootstrap", ran.bootstrap]
    spec = str(ran.path)
    text = streamdag("inspect", spec, "--request-id", "j3", "--show-values", *b)
    as_json = streamdag("inspect", spec, "--request-id", FAILING, "--since", "10m", "--json", *b)
    errors = streamdag("errors", spec, *b)
    last = streamdag("inspect", spec, "--last", "2", "--step", "both", *b)

    code, out, err = finish(text)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"request j3 in pipeline {ran.name} (partition ")
    hops = [line.split()[3] for line in lines if not line.startswith((" ", "request "))]
    assert hops[:2] == ["inputs", "split"] and hops[4:] == ["outputs"]
    assert "    x: INT64 [1] [3]" in lines
    assert "    total: INT64 [1] [41]" in lines
    assert any(line.startswith("    headers: ") and "x-tenant=acme" in line for line in lines)

    code, out, err = finish(as_json)
    assert code == 0, err
    trace = json.loads(out)
    assert trace["request_id"] == FAILING
    [failed] = [hop for hop in trace["hops"] if hop["role"] == "errors"]
    assert failed["error"]["step"] == "right" and failed["error"]["code"] == "model_error"
    assert failed["since_previous_ms"] >= 0

    code, out, err = finish(errors)
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == [
        "TIME",
        "STEP",
        "CODE",
        "ATTEMPTS",
        "REQUEST",
        "FAILED",
        "RECORD",
        "MESSAGE",
    ]
    assert row.split()[1:5] == ["right", "model_error", "2", FAILING]
    assert row.endswith("right branch cannot take 70")

    code, out, err = finish(last)
    assert code == 0, err
    firsts = [line for line in out.splitlines() if not line.startswith(" ")]
    # both answers alone: its records are the outputs topic's.
    assert len(firsts) == 2 and all(f"streamdag.{ran.name}.outputs[" in f for f in firsts)


def test_cli_one_line_errors(ran: Ran, tmp_path: Path) -> None:
    b = ["--bootstrap", ran.bootstrap]
    spec = str(ran.path)
    runs = {
        "missing": streamdag("inspect", spec, "--request-id", "nope", "--since", "2h", *b),
        "step": streamdag("inspect", spec, "--last", "3", "--step", "nope", *b),
        "errors-step": streamdag("errors", spec, "--step", "nope", *b),
        "broker": streamdag("inspect", spec, "--request-id", "j1", "--bootstrap", "127.0.0.1:1"),
        "replay-unknown": streamdag("errors", spec, "--replay", "--request-id", "j3", *b),
    }
    results = {name: finish(proc) for name, proc in runs.items()}
    for name, (code, out, err) in results.items():
        assert code == 1, (name, out, err)
        assert out == "", name
        assert len(err.splitlines()) == 1 and err.startswith("error: "), (name, err)
    p = ran.name
    assert results["missing"][2].startswith(
        f"error: request nope not found in streamdag.{p}.* (partition "
        f"{partition_for(b'nope', PARTITIONS)}) since "
    )
    assert "unknown step 'nope': pipeline " in results["step"][2]
    assert "split, left, right, both" in results["step"][2]
    assert "unknown step 'nope'" in results["errors-step"][2]
    assert results["broker"][2].startswith("error: cannot reach Kafka at 127.0.0.1:1")
    assert results["replay-unknown"][2].startswith(
        f"error: no failed record of request j3 in streamdag.{p}.errors since "
    )
