"""The engine's side of the claim check without a broker: a stub is decoded from the
store, a stub without a store or with a lost object is a data_loss failure of its own
record, and a result over the inline limit leaves as stubs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streamdag.engine.envelope import decode_records
from streamdag.engine.logic import StepLogic
from streamdag.engine.plan import StepPlan, step_plan
from streamdag.kafka import headers as h
from streamdag.payloads import PayloadStore
from streamdag.pipeline import compile_plan, parse_spec
from streamdag.protocol import decode_response, encode_request, response_from_bytes
from tests.engine.fake_kafka import FakeMessage

INPUTS = "streamdag.p.inputs"


def plan() -> StepPlan:
    spec = parse_spec(
        {
            "name": "p",
            "models": {"m": {"runtime": "python", "handler": "claim_models:double"}},
            "steps": [{"name": "s", "model": "m"}],
        }
    )
    return step_plan(compile_plan(spec), "s")


def stub_message(store: PayloadStore, x: np.ndarray, offset: int) -> FakeMessage:
    value = encode_request("p", {"x": x}, id=f"r{offset}").SerializeToString()
    stub, header = store.check_in(f"r{offset}", value)
    headers: list[tuple[str, bytes | None]] = [(h.PAYLOAD, header)]
    return FakeMessage(
        stub, f"r{offset}".encode(), headers, INPUTS, 0, offset, (1, 1_700_000_000_000)
    )


def test_a_step_sees_the_same_arrays_and_answers_with_stubs(tmp_path: Path) -> None:
    store = PayloadStore(f"file://{tmp_path}")
    x = np.arange(400_000, dtype=np.float32).reshape(1, -1)  # 1.6 MB
    envelopes = decode_records([stub_message(store, x, 1)], lambda t: t == INPUTS, payloads=store)
    assert envelopes[0].problem is None
    np.testing.assert_array_equal(envelopes[0].arrays["x"], x)
    logic = StepLogic(plan(), lambda inputs: {"y": inputs["x"] * 2}, store)
    records = logic.process(envelopes)
    # s answers alone: one result, on the pipeline's outputs topic
    assert [r.topic for r in records] == ["streamdag.p.outputs"]
    for record in records:
        assert len(record.value or b"") < 1000
        header = h.get_header(record.headers, h.PAYLOAD)
        assert header is not None
        answer: Any = decode_response(response_from_bytes(store.claim(header)))
        np.testing.assert_array_equal(answer["y"], x * 2)


def test_a_stub_without_a_store_or_object_fails_its_own_record(tmp_path: Path) -> None:
    store = PayloadStore(f"file://{tmp_path}")
    x = np.ones((1, 10), dtype=np.float32)
    lost = stub_message(store, x, 2)
    for path in tmp_path.rglob("r2-*"):
        path.unlink()
    messages = [stub_message(store, x, 1), lost]
    without = decode_records(messages, lambda t: t == INPUTS)
    assert [e.problem.code if e.problem else None for e in without] == ["data_loss"] * 2
    assert "this worker has none" in str(without[0].problem)
    envelopes = decode_records(messages, lambda t: t == INPUTS, payloads=store)
    assert envelopes[0].problem is None and envelopes[1].problem is not None
    assert "is missing from the payload store" in envelopes[1].problem.message
    records = StepLogic(plan(), lambda inputs: {"y": inputs["x"]}, store).process(envelopes)
    failed = [r for r in records if r.topic == "streamdag.p.errors"]
    assert len(failed) == 1 and failed[0].value == lost.value()  # the stub, to replay
    assert h.get_header(failed[0].headers, h.PAYLOAD) == lost.headers()[0][1].decode()
    info = h.ErrorInfo.decode(h.get_header(failed[0].headers, h.ERROR) or "")
    assert info.code == "data_loss"
