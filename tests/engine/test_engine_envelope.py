"""Kafka records <-> requests: decoding consumed records and building the records a step
writes, with the headers that travel through the graph."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from streamdag.engine.envelope import Envelope, decode_record, error_reply, result_records
from streamdag.errors import DecodeError, InvalidInput
from streamdag.kafka.headers import CALL, ErrorInfo
from streamdag.protocol import (
    decode_response,
    encode_request,
    encode_response,
    read_parameters,
    response_from_bytes,
)
from tests.engine.fake_kafka import FakeMessage

INPUTS = FakeMessage.topic_
CLEAN_OUT = "streamdag.triage.clean.outputs"
RECORD_TS = FakeMessage.timestamp_[1]
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

Headers = list[tuple[str, bytes | None]]


def request_arrays() -> dict[str, np.ndarray]:
    return {
        "x": np.array([[1.5, 2.5], [3.5, 4.5]], dtype=np.float32),
        "text": np.array([b"hello", b"world"], dtype=object),
    }


def request_bytes(id: str = "") -> bytes:
    return bytes(encode_request("triage", request_arrays(), id=id).SerializeToString())


def values(headers: list[tuple[str, bytes]], name: str) -> list[str]:
    """Every value of header ``name``, as text, in order."""
    return [v.decode() for k, v in headers if k == name]


def assert_request_arrays(arrays: dict[str, np.ndarray]) -> None:
    expected = request_arrays()
    assert list(arrays) == ["x", "text"]
    assert arrays["x"].dtype == np.float32
    np.testing.assert_array_equal(arrays["x"], expected["x"])
    assert arrays["text"].tolist() == [b"hello", b"world"]


# -- decode_record ------------------------------------------------------------------------


def test_protobuf_request_takes_its_id_from_the_key() -> None:
    msg = FakeMessage(
        request_bytes(id="body-id"), key_=b"key-id", headers_=[("x-request-id", b"hdr-id")]
    )
    env = decode_record(msg, is_request=True)
    assert env.problem is None and env.error is None
    assert env.request_id == "key-id"
    assert (env.topic, env.partition, env.offset) == (INPUTS, 4, 1234)
    assert env.request_ts_ms == RECORD_TS
    assert env.value == msg.value_
    assert_request_arrays(env.arrays)


def test_request_without_key_takes_its_id_from_the_header() -> None:
    msg = FakeMessage(request_bytes(id="body-id"), headers_=[("x-request-id", b"hdr-id")])
    env = decode_record(msg, is_request=True)
    assert env.problem is None
    assert env.request_id == "hdr-id"
    assert_request_arrays(env.arrays)


def test_request_without_key_or_header_takes_its_id_from_the_body() -> None:
    env = decode_record(FakeMessage(request_bytes(id="body-id")), is_request=True)
    assert env.problem is None
    assert env.request_id == "body-id"


def test_request_without_any_id_gets_a_fresh_one() -> None:
    first = decode_record(FakeMessage(request_bytes()), is_request=True)
    second = decode_record(FakeMessage(request_bytes()), is_request=True)
    assert first.request_id and second.request_id
    assert first.request_id != second.request_id


def test_request_ts_header_wins_over_the_record_timestamp() -> None:
    msg = FakeMessage(request_bytes(), key_=b"r", headers_=[("streamdag-request-ts", b"1000")])
    assert decode_record(msg, is_request=True).request_ts_ms == 1000


def test_oip_json_body_is_accepted_with_content_type_json() -> None:
    body = {
        "id": "json-id",
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1.5, 2.5, 3.5, 4.5]},
            {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["hello", "world"]},
        ],
    }
    msg = FakeMessage(json.dumps(body).encode(), headers_=[("content-type", b"application/json")])
    env = decode_record(msg, is_request=True, model_name="triage")
    assert env.problem is None
    assert env.request_id == "json-id"
    assert_request_arrays(env.arrays)


def test_json_body_without_content_type_is_not_taken_for_json() -> None:
    msg = FakeMessage(b'{"id": "j", "inputs": []}', key_=b"k")
    env = decode_record(msg, is_request=True)
    assert isinstance(env.problem, DecodeError)


@pytest.mark.parametrize(
    ("value", "headers", "is_request"),
    [
        (b"\xff\xfe garbage \x00\x01", None, True),
        (b"{not json", [("content-type", b"application/json")], True),
        (b"\xff\xfe garbage \x00\x01", None, False),
    ],
    ids=["protobuf-request", "json-request", "step-output"],
)
def test_garbage_sets_problem_and_never_raises(
    value: bytes, headers: Headers | None, is_request: bool
) -> None:
    msg = FakeMessage(
        value, key_=b"bad-1", headers_=headers, topic_=INPUTS if is_request else CLEAN_OUT
    )
    env = decode_record(msg, is_request=is_request)
    assert isinstance(env.problem, DecodeError)
    assert env.problem.code == "invalid_argument"
    assert env.request_id == "bad-1"  # still answerable: the error reply needs the id
    assert env.arrays == {}


def test_a_json_request_that_breaks_the_protocol_names_the_field() -> None:
    body = {"id": "j", "inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1]}]}
    msg = FakeMessage(json.dumps(body).encode(), headers_=[("content-type", b"application/json")])
    env = decode_record(msg, is_request=True)
    assert isinstance(env.problem, InvalidInput)
    assert "inputs[0].data" in env.problem.message
    assert "shape [3]" in env.problem.message
    assert env.arrays == {}


def test_a_record_without_timestamp_is_timed_from_now() -> None:
    before = int(time.time() * 1000)
    no_timestamp = (0, -1)  # what confluent-kafka gives for TIMESTAMP_NOT_AVAILABLE
    msg = FakeMessage(request_bytes(), key_=b"r", timestamp_=no_timestamp)
    env = decode_record(msg, is_request=True)
    assert before <= env.request_ts_ms <= time.time() * 1000


def test_step_output_record_decodes_to_its_arrays() -> None:
    outputs = {"y": np.array([[1, 2], [3, 4]], dtype=np.int64)}
    value = encode_response("cleaner", outputs, id="r-7").SerializeToString()
    msg = FakeMessage(value, key_=b"r-7", topic_=CLEAN_OUT, headers_=[("x-request-id", b"r-7")])
    env = decode_record(msg, is_request=False)
    assert env.problem is None and env.error is None
    assert env.request_id == "r-7"
    np.testing.assert_array_equal(env.arrays["y"], outputs["y"])


def test_error_reply_record_sets_error() -> None:
    info = ErrorInfo("model_error", "ValueError: boom", "clean", 3)
    value = encode_response("cleaner", {}, id="r-8").SerializeToString()
    msg = FakeMessage(
        value, key_=b"r-8", topic_=CLEAN_OUT, headers_=[("streamdag-error", info.encode())]
    )
    env = decode_record(msg, is_request=False)
    assert env.problem is None
    assert env.error == info
    assert env.arrays == {}


# -- result_records -----------------------------------------------------------------------


def incoming(key: bytes = b"req-1") -> Envelope:
    headers: Headers = [
        ("x-tenant", b"acme"),
        ("traceparent", TRACEPARENT),
        ("x-request-id", b"stale-id"),
        ("streamdag-step", b"upstream"),
        ("streamdag-attempt", b"9"),
        ("content-type", b"application/json"),
        ("x-empty", None),
    ]
    body = {"id": "", "inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [7]}]}
    msg = FakeMessage(json.dumps(body).encode(), key_=key, headers_=headers)
    env = decode_record(msg, is_request=True)
    assert env.problem is None
    return env


def test_result_record_carries_user_headers_and_stamps_its_own() -> None:
    env = incoming()
    outputs = {
        "score": np.array([[0.25, 0.75]], dtype=np.float32),
        "label": np.array([b"flu"], dtype=object),
    }
    (record,) = result_records(
        env,
        [("streamdag.triage.sections.outputs", "classify")],
        outputs,
        pipeline="triage",
        version="3",
        step="sections",
        attempts=2,
        own_topic="streamdag.triage.sections.outputs",
    )
    assert record.topic == "streamdag.triage.sections.outputs"
    assert record.key == "req-1"

    hs = record.headers
    assert values(hs, "x-tenant") == ["acme"]
    assert values(hs, "traceparent") == [TRACEPARENT.decode()]
    # The key is the request id: no header repeats it (nor carries a stale one on).
    assert values(hs, "x-request-id") == []
    assert values(hs, "streamdag-attempt") == ["2"]  # a retry: how many the model needed
    assert values(hs, "streamdag-request-ts") == [str(RECORD_TS)]
    # The topic names the pipeline and the step; the upstream step's headers stay behind.
    assert values(hs, "streamdag-pipeline") == []
    assert values(hs, "streamdag-pipeline-version") == []
    assert values(hs, "streamdag-step") == []
    # The value is protobuf, whatever the request was; no error on a success.
    assert values(hs, "content-type") == []
    assert values(hs, "streamdag-error") == []
    assert all(v is not None for _, v in hs)

    response = response_from_bytes(record.value)
    assert response.id == "req-1"
    assert response.model_name == "classify"
    arrays = decode_response(response)
    assert arrays["score"].dtype == np.float32
    np.testing.assert_array_equal(arrays["score"], outputs["score"])
    assert arrays["label"].tolist() == [b"flu"]


def test_result_record_decodes_back_on_the_next_step() -> None:
    env = incoming(key=b"req-2")
    outputs = {"y": np.arange(6, dtype=np.int64).reshape(2, 3)}
    (record,) = result_records(
        env,
        [(CLEAN_OUT, "cleaner")],
        outputs,
        pipeline="triage",
        version="1",
        step="clean",
        attempts=1,
    )
    msg = FakeMessage(
        record.value, key_=record.key.encode(), headers_=list(record.headers), topic_=CLEAN_OUT
    )
    downstream = decode_record(msg, is_request=False)
    assert downstream.request_id == "req-2"
    assert downstream.request_ts_ms == env.request_ts_ms
    np.testing.assert_array_equal(downstream.arrays["y"], outputs["y"])
    assert ("x-tenant", b"acme") in downstream.carried_headers


# -- error_reply --------------------------------------------------------------------------

FAILURE = ErrorInfo("model_error", "ValueError: poison", "sections", 3)


def error_of(headers: list[tuple[str, bytes]]) -> dict[str, object]:
    (raw,) = values(headers, "streamdag-error")
    parsed: dict[str, object] = json.loads(raw)
    return parsed


def test_error_reply_is_an_empty_response_with_the_error_header() -> None:
    env = incoming(key=b"req-3")
    record = error_reply(
        env,
        "streamdag.triage.outputs",
        FAILURE,
        model_name="triage",
        pipeline="triage",
        version="3",
    )
    assert record.topic == "streamdag.triage.outputs"
    assert record.key == "req-3"
    assert error_of(record.headers) == {
        "code": "model_error",
        "message": "ValueError: poison",
        "step": "sections",
        "attempts": 3,
    }
    assert values(record.headers, "x-request-id") == []  # the key says it
    assert values(record.headers, "x-tenant") == ["acme"]
    assert values(record.headers, "traceparent") == [TRACEPARENT.decode()]
    assert values(record.headers, "streamdag-attempt") == ["3"]

    response = response_from_bytes(record.value)
    assert response.id == "req-3"
    assert decode_response(response) == {}
    assert read_parameters(response.parameters) == {
        "error": "ValueError: poison",
        "error_code": "model_error",
        "error_step": "sections",
    }


def test_error_reply_with_original_keeps_the_failed_record_and_where_it_came_from() -> None:
    env = incoming(key=b"req-4")
    record = error_reply(
        env,
        "streamdag.triage.errors",
        FAILURE,
        model_name="classify",
        pipeline="triage",
        version="3",
        original=True,
    )
    assert record.topic == "streamdag.triage.errors"
    assert record.key == "req-4"
    assert record.value == env.value
    assert error_of(record.headers)["code"] == "model_error"
    assert error_of(record.headers)["attempts"] == 3
    assert values(record.headers, "streamdag-source-topic") == [INPUTS]
    assert values(record.headers, "streamdag-source-partition") == ["4"]
    assert values(record.headers, "streamdag-source-offset") == ["1234"]
    # The original was JSON: whoever replays it must know.
    assert values(record.headers, "content-type") == ["application/json"]
    assert values(record.headers, "x-tenant") == ["acme"]


def test_an_undecodable_record_can_still_be_sent_to_the_errors_topic() -> None:
    garbage = b"\xff\xfe garbage"
    env = decode_record(FakeMessage(garbage, key_=b"bad-2", offset_=77), is_request=True)
    assert env.problem is not None
    info = ErrorInfo(env.problem.code, env.problem.message, "clean", 0)
    record = error_reply(
        env,
        "streamdag.triage.errors",
        info,
        model_name="cleaner",
        pipeline="triage",
        version="1",
        original=True,
    )
    assert record.value == garbage
    assert error_of(record.headers)["code"] == "invalid_argument"
    assert "ModelInferRequest" in str(error_of(record.headers)["message"])
    assert values(record.headers, "streamdag-source-offset") == ["77"]
    assert values(record.headers, "content-type") == []


def test_result_records_for_two_topics_differ_only_in_model_name() -> None:
    env = incoming(key=b"req-3")
    outputs = {"y": np.array([[1.5, 2.5]], dtype=np.float32)}
    step_record, final_record = result_records(
        env,
        [("streamdag.triage.coder.outputs", "icd"), ("streamdag.triage.outputs", "triage")],
        outputs,
        pipeline="triage",
        version="1",
        step="coder",
        attempts=1,
    )
    assert (step_record.topic, final_record.topic) == (
        "streamdag.triage.coder.outputs",
        "streamdag.triage.outputs",
    )
    for record, name in ((step_record, "icd"), (final_record, "triage")):
        response = response_from_bytes(record.value)
        assert (response.model_name, response.id, response.model_version) == (name, "req-3", "1")
        np.testing.assert_array_equal(decode_response(response)["y"], outputs["y"])


def test_a_first_try_writes_no_attempt_and_only_a_shared_topic_names_the_step() -> None:
    env = incoming(key=b"req-4")
    step_record, final_record = result_records(
        env,
        [("streamdag.triage.coder.outputs", "icd"), ("streamdag.triage.outputs", "triage")],
        {"y": np.array([[1.5]], dtype=np.float32)},
        pipeline="triage",
        version="1",
        step="coder",
        attempts=1,
        own_topic="streamdag.triage.coder.outputs",
    )
    assert values(step_record.headers, "streamdag-step") == []
    assert values(final_record.headers, "streamdag-step") == ["coder"]
    for record in (step_record, final_record):
        assert values(record.headers, "streamdag-attempt") == []
        assert record.key == "req-4"
        assert values(record.headers, "x-request-id") == []


def test_a_request_from_a_client_is_given_a_call_named_by_its_place() -> None:
    """A record written straight to the inputs topic names no call: every step that reads
    it stamps the same one, from its partition and offset."""
    env = decode_record(FakeMessage(request_bytes(), key_=b"r1"), is_request=True)
    assert values(env.headers, CALL) == ["4-1234"]
    assert values(env.carried_headers, CALL) == ["4-1234"]


def test_a_gateway_call_keeps_its_token() -> None:
    msg = FakeMessage(request_bytes(), key_=b"r1", headers_=[(CALL, b"abc123")])
    env = decode_record(msg, is_request=True)
    assert values(env.headers, CALL) == ["abc123"]
    step_out = FakeMessage(b"", key_=b"r1", topic_=CLEAN_OUT, headers_=[])
    assert values(decode_record(step_out, is_request=False).headers, CALL) == []
