"""How records, traces and failures are decoded and shown; no broker needed."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import streamdag.observability.errors_view as errors_view
import streamdag.observability.inspect as inspect
import streamdag.observability.records as records
import streamdag.observability.render as render
import streamdag.observability.scan as scan
from streamdag.errors import ConfigError
from streamdag.kafka.headers import ErrorInfo
from streamdag.observability.errors_view import Failure, ReplayResult, replay_headers
from streamdag.observability.inspect import Hop, Trace
from streamdag.observability.records import summarise, view_record
from streamdag.observability.render import format_failures, format_replay, format_trace
from streamdag.observability.scan import Record, format_time, parse_since
from streamdag.protocol import encode_request, encode_response

NOW = 1_800_000_000_000


def _record(topic: str, value: bytes, headers: list[tuple[str, bytes]], ts: int = NOW) -> Record:
    return Record(topic, 1, 7, ts, b"r1", value, headers)


def test_public_names() -> None:
    assert scan.__all__ == [
        "METADATA_TIMEOUT_S",
        "READ_TIMEOUT_S",
        "Record",
        "TopicReader",
        "Window",
        "format_time",
        "parse_since",
    ]
    assert records.__all__ == [
        "DIGEST_CHARS",
        "HEAD_VALUES",
        "RecordView",
        "Role",
        "Source",
        "TensorSummary",
        "entered_ms",
        "shown_headers",
        "summarise",
        "view_record",
    ]
    assert inspect.__all__ == [
        "DEFAULT_SINCE_MS",
        "Hop",
        "PipelineTopic",
        "Trace",
        "last_records",
        "pipeline_topics",
        "trace_request",
    ]
    assert errors_view.__all__ == [
        "DEFAULT_SINCE_MS",
        "Failure",
        "ReplayResult",
        "list_failures",
        "replay_failures",
        "replay_headers",
    ]
    assert render.__all__ == ["format_failures", "format_records", "format_replay", "format_trace"]
    for module in (scan, records, inspect, errors_view, render):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - 90_000),
        ("15m", NOW - 900_000),
        ("1h", NOW - 3_600_000),
        ("1.5h", NOW - 5_400_000),
        ("2d", NOW - 172_800_000),
        ("250ms", NOW - 250),
        ("2027-01-15T08:00:00Z", 1_800_000_000_000 - 0),
        ("2027-01-15T08:00:00", 1_800_000_000_000),
        ("2027-01-15T09:00:00+01:00", 1_800_000_000_000),
    ],
)
def test_since_takes_a_duration_or_a_time(text: str, expected: int) -> None:
    assert parse_since(text, now_ms=NOW) == expected


def test_since_rejects_anything_else() -> None:
    with pytest.raises(ConfigError, match=r"--since 'yesterday': give a duration"):
        parse_since("yesterday")


def test_format_time_is_utc_with_milliseconds() -> None:
    assert format_time(NOW + 42) == "2027-01-15T08:00:00.042Z"


def test_a_request_shows_its_tensors_and_headers() -> None:
    value = encode_request(
        "", {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "s": np.array([b"a", b"\xff"])}
    ).SerializeToString()
    headers = [
        ("x-request-id", b"r1"),
        ("traceparent", b"00-abc-def-01"),
        ("content-length", b"9"),
        ("content-type", b"application/octet-stream"),
        ("streamdag-request-ts", b"5"),
    ]
    view = view_record(_record("streamdag.p.inputs", value, headers), "inputs")
    assert view.label == "inputs" and view.request_id == "r1" and view.step is None
    assert view.headers == {
        "x-request-id": "r1",
        "traceparent": "00-abc-def-01",
        "content-type": "application/octet-stream",
        "streamdag-request-ts": "5",
    }
    assert list(view.headers)[-1] == "streamdag-request-ts"
    x, s = view.tensors
    assert (x.name, x.datatype, x.shape, x.head, x.size) == (
        "x",
        "FP32",
        (3, 4),
        (0, 1, 2, 3, 4),
        12,
    )
    assert (s.datatype, s.head) == ("BYTES", ("a", "\\xff"))
    assert view.problem is None


def test_a_json_request_is_read_by_its_content_type() -> None:
    body = {"inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "data": [1, 2]}]}
    headers = [("content-type", b"application/json")]
    view = view_record(_record("t", json.dumps(body).encode(), headers), "inputs")
    assert [(t.name, t.datatype, t.head) for t in view.tensors] == [("x", "INT32", (1, 2))]


def test_markers_and_undecodable_records() -> None:
    error = ErrorInfo("model_error", "boom", "right", 2)
    reply = view_record(
        _record("streamdag.p.outputs", b"", [("streamdag-error", error.encode())]), "outputs"
    )
    assert reply.error == error and reply.step == "right" and reply.tensors == ()
    skip = view_record(
        _record("streamdag.p.b.outputs", b"", [("streamdag-skipped", b"1")]), "step", step="b"
    )
    assert skip.skipped and skip.label == "b"
    bad = view_record(_record("streamdag.p.inputs", b"\xff\xff", []), "inputs")
    assert bad.problem is not None and bad.tensors == ()
    nan = encode_response("", {"y": np.array([np.nan, 1.5])}).SerializeToString()
    assert view_record(_record("t", nan, []), "outputs").tensors[0].head == ("nan", 1.5)


def test_an_errors_record_shows_the_failed_record_and_where_it_was_read() -> None:
    failed_request = encode_request("", {"x": np.array([7])}).SerializeToString()
    headers = [
        ("streamdag-error", ErrorInfo("invalid_argument", "bad x", "split", 0).encode()),
        ("streamdag-source-topic", b"streamdag.p.inputs"),
        ("streamdag-source-partition", b"1"),
        ("streamdag-source-offset", b"3"),
    ]
    view = view_record(
        _record("streamdag.p.errors", failed_request, headers),
        "errors",
        inputs_topic="streamdag.p.inputs",
    )
    assert view.step == "split" and view.source is not None
    assert (view.source.topic, view.source.partition, view.source.offset) == (
        "streamdag.p.inputs",
        1,
        3,
    )
    assert [t.head for t in view.tensors] == [(7,)]
    assert view.to_dict()["error"] == {
        "code": "invalid_argument",
        "message": "bad x",
        "step": "split",
        "attempts": 0,
    }
    lines = format_failures([Failure(view)])
    assert lines[0].split() == [
        "TIME",
        "STEP",
        "CODE",
        "ATTEMPTS",
        "REQUEST",
        "FAILED",
        "RECORD",
        "MESSAGE",
    ]
    assert lines[1].split() == [
        "2027-01-15T08:00:00.000Z",
        "split",
        "invalid_argument",
        "0",
        "r1",
        "streamdag.p.inputs[1]@3",
        "bad",
        "x",
    ]


def test_replay_keeps_the_callers_headers_only() -> None:
    headers = [
        ("x-request-id", b"old"),
        ("x-tenant", b"acme"),
        ("traceparent", b"00-a-b-01"),
        ("content-type", b"application/json"),
        ("streamdag-reply-to", b"2"),
        ("streamdag-error", b"{}"),
        ("streamdag-request-ts", b"5"),
        ("authorization", b"secret"),
    ]
    assert replay_headers(headers, "r1") == [
        ("x-request-id", b"r1"),
        ("x-tenant", b"acme"),
        ("traceparent", b"00-a-b-01"),
        ("content-type", b"application/json"),
    ]


def test_trace_text_has_one_block_per_record_with_times_between() -> None:
    request = encode_request("", {"x": np.array([3])}).SerializeToString()
    result = encode_response("", {"y": np.array([4.0])}).SerializeToString()
    first = view_record(_record("streamdag.p.inputs", request, [("x-a", b"1")]), "inputs")
    second = view_record(
        _record("streamdag.p.s.outputs", result, [("streamdag-step", b"s")], ts=NOW + 12),
        "step",
        step="s",
    )
    trace = Trace("p", "r1", 1, NOW - 1000, (Hop(first, None), Hop(second, 12)))
    assert format_trace(trace, values=True) == [
        "request r1 in pipeline p (partition 1): 2 records since 2027-01-15T07:59:59.000Z, "
        "12 ms from first to last",
        "2027-01-15T08:00:00.000Z       +0 ms  inputs  streamdag.p.inputs[1]@7",
        "    headers: x-a=1",
        "    x: INT64 [1] [3]",
        "2027-01-15T08:00:00.012Z      +12 ms  s       streamdag.p.s.outputs[1]@7",
        "    headers: streamdag-step=s",
        "    y: FP64 [1] [4]",
    ]
    assert trace.to_dict()["hops"][1]["since_previous_ms"] == 12
    # Without values: datatype, shape and digest, as the commands show by default.
    x_digest = "sha256:" + hashlib.sha256(np.array([3]).tobytes()).hexdigest()[:12]
    hidden = format_trace(trace)
    assert hidden[3] == f"    x: INT64 [1] {x_digest}"
    assert "[3]" not in hidden[3] and "[4]" not in hidden[-1]
    assert "head" not in trace.to_dict()["hops"][0]["tensors"][0]
    assert trace.to_dict(values=True)["hops"][0]["tensors"][0]["head"] == [3]


def test_a_bytes_tensor_is_digested_as_oip_raw_contents() -> None:
    notes = np.array([b"chest pain", b"ok"], dtype=object)
    raw = b"".join(len(n).to_bytes(4, "little") + n for n in notes)
    summary = summarise("note", notes, "BYTES")
    assert summary.digest == "sha256:" + hashlib.sha256(raw).hexdigest()[:12]
    assert summary.to_dict() == {
        "name": "note",
        "datatype": "BYTES",
        "shape": [2],
        "size": 2,
        "digest": summary.digest,
    }
    assert summary.to_dict(values=True)["head"] == ["chest pain", "ok"]
    assert summarise("other", np.array([b"chest pain"], dtype=object), "BYTES").digest != (
        summary.digest
    )


def test_a_replayed_failure_is_marked_in_the_list() -> None:
    value = encode_request("", {"x": np.array([3])}).SerializeToString()
    error = ErrorInfo("model_error", "boom", "s", 1).encode()
    headers = [("streamdag-error", error)]
    first = view_record(_record("streamdag.p.errors", value, headers), "errors")
    again = view_record(
        _record(
            "streamdag.p.errors",
            value,
            [*headers, ("streamdag-replayed", b"streamdag.p.errors[1]@7")],
        ),
        "errors",
    )
    assert (first.replayed, again.replayed) == (False, True)
    assert again.to_dict()["replayed"] is True
    rows = format_failures([Failure(first), Failure(again)])
    assert rows[1].endswith("  boom") and rows[2].endswith("  [replayed] boom")


def test_replay_summary() -> None:
    result = ReplayResult("streamdag.p.inputs", replayed=["a", "b"], resubmitted=["c"])
    assert format_replay(result) == [
        "replayed 2 requests to streamdag.p.inputs: a, b",
        "skipped 1 request sent again since it failed (--force replays it anyway): c",
    ]
    assert format_replay(ReplayResult("t")) == ["replayed 0 requests to t"]
