"""A request id sent again is a new request: each call gets its own reply, through linear
steps and joins, also while a worker is SIGKILLed and restarted."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from kafka_support import Workers, read_results, read_topic
from server_support import running_server

from streamdag.kafka.headers import CALL, get_header
from streamdag.pipeline import PipelineSpec, compile_plan, load_spec
from streamdag.serving import KafkaGateway

pytestmark = pytest.mark.kafka

MODELS = """
models:
  double: {{runtime: python, handler: "gateway_models:double"}}
  add-one: {{runtime: python, handler: "gateway_models:add_one"}}
  slow: {{runtime: python, handler: "gateway_models:slow"}}
"""

HEAD = """
name: "{name}"
guarantee: {guarantee}
partitions: 2
timeout_ms: 20000
"""

LINEAR = (
    HEAD
    + MODELS
    + """
steps:
  - {{name: double, model: double}}
  - {{name: slow, model: slow, inputs: [double.outputs]}}
"""
)

JOIN = (
    HEAD
    + MODELS
    + """
steps:
  - {{name: double, model: double}}
  - {{name: slow, model: slow, inputs: [pipeline.inputs.x]}}
  - name: joined
    model: add-one
    inputs: [double.outputs.x, slow.outputs.x]
    tensor_map: {{slow.outputs.x: y}}
    join: {join}
"""
)


def body(rid: str, x: float, **parameters: object) -> dict[str, object]:
    return {
        "id": rid,
        "parameters": parameters,
        "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [x]}],
    }


@pytest.fixture
def write_pipeline(
    tmp_path: Path, unique_name: Callable[[str], str]
) -> Callable[..., tuple[Path, PipelineSpec]]:
    def make(
        template: str, guarantee: str = "exactly_once", **fields: str
    ) -> tuple[Path, PipelineSpec]:
        shutil.copy(Path(__file__).with_name("gateway_models.py"), tmp_path / "gateway_models.py")
        path = tmp_path / "pipeline.yaml"
        path.write_text(template.format(name=unique_name("call"), guarantee=guarantee, **fields))
        return path, load_spec(path)

    return make


def _timed_out_then_sent_again(url: str, rid: str) -> httpx.Response:
    """The first call of ``rid`` (x=1) times out while the slow step works on it; the
    second call (x=5) must get its own answer, not the first call's late one."""
    first = httpx.post(url, json=body(rid, 1.0, timeout=300_000), timeout=30)
    assert first.status_code == 504
    return httpx.post(url, json=body(rid, 5.0), timeout=30)


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_a_late_reply_is_never_taken_for_a_retry_of_its_request_id(
    bootstrap: str,
    write_pipeline: Callable[..., tuple[Path, PipelineSpec]],
    workers: Callable[[Path], Workers],
    guarantee: str,
) -> None:
    path, spec = write_pipeline(LINEAR, guarantee)
    w = workers(path)
    w.start()
    with running_server([spec], gateway=KafkaGateway([compile_plan(spec)], bootstrap)) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"
        second = _timed_out_then_sent_again(url, "r1")
    assert second.status_code == 200, second.text
    assert second.json()["outputs"][0]["data"] == [10.0]
    assert second.json()["id"] == "r1"
    # Both calls ran: the outputs topic holds one answer of each, told apart by their call.
    answers = read_results(bootstrap, spec.name, until=2, timeout=20)
    assert sorted(a.arrays["x"].tolist() for a in answers) == [[[2.0]], [[10.0]]]
    assert len({get_header(list(a.headers.items()), CALL) for a in answers}) == 2


@pytest.mark.parametrize("join", ["inner", "any"])
def test_a_join_keeps_two_calls_of_one_request_id_apart(
    bootstrap: str,
    write_pipeline: Callable[..., tuple[Path, PipelineSpec]],
    workers: Callable[[Path], Workers],
    join: str,
) -> None:
    path, spec = write_pipeline(JOIN, join=join)
    w = workers(path)
    w.start()
    with running_server([spec], gateway=KafkaGateway([compile_plan(spec)], bootstrap)) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"
        if join == "any":
            # The first piece answers an `any` join; a second call soon after is a new
            # request, not a late piece of the first.
            first = httpx.post(url, json=body("j1", 1.0), timeout=30)
            assert first.status_code == 200, first.text
            second = httpx.post(url, json=body("j1", 5.0), timeout=30)
        else:
            second = _timed_out_then_sent_again(url, "j1")
    assert second.status_code == 200, second.text
    outputs = {o["name"]: o["data"] for o in second.json()["outputs"]}
    if join == "any":
        assert outputs == {"x": [11.0]}  # the fast branch: 5 * 2 + 1
    else:
        assert outputs == {"x": [11.0], "y": [5.0]}


CHAOS_IDS = 40


def test_reused_ids_under_a_worker_sigkill_each_get_their_own_answer_once(
    bootstrap: str,
    write_pipeline: Callable[..., tuple[Path, PipelineSpec]],
    workers: Callable[[Path], Workers],
) -> None:
    """Every request id is sent twice with different inputs, the second time as soon as
    the first is answered or timed out, while a worker of the join step is SIGKILLed and
    restarted: each call that is answered gets its own input's result, and the outputs
    topic holds one final answer per call: none lost, none twice."""
    path, spec = write_pipeline(
        JOIN.replace('handler: "gateway_models:slow"', 'handler: "gateway_models:add_one"'),
        join="inner",
    )
    w = workers(path)
    first = w.start()
    w.start()
    wrong: list[str] = []
    answered = 0
    lock = threading.Lock()
    with running_server([spec], gateway=KafkaGateway([compile_plan(spec)], bootstrap)) as server:
        url = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}/infer"

        def two_calls(i: int) -> None:
            nonlocal answered
            for x in (float(i + 100), float(i + 1000)):
                r = httpx.post(url, json=body(f"id-{i}", x, timeout=15_000_000), timeout=30)
                if r.status_code != 200:
                    assert r.status_code == 504, r.text
                    continue
                outputs = {o["name"]: o["data"] for o in r.json()["outputs"]}
                with lock:
                    answered += 1
                    if outputs != {"x": [2 * x + 1], "y": [x + 1]}:
                        wrong.append(f"id-{i} x={x}: {outputs}")

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(two_calls, i) for i in range(CHAOS_IDS)]
            time.sleep(1.0)
            w.kill(first)  # SIGKILL mid-stream
            w.start()
            for f in futures:
                f.result()
    assert wrong == []
    assert answered >= CHAOS_IDS  # most calls answered despite the kill
    # Every call's final answer is on the outputs topic exactly once (read_committed).
    finals = read_topic(bootstrap, f"streamdag.{spec.name}.outputs", until=2 * CHAOS_IDS, settle=3)
    calls = [get_header(headers, CALL) for _, _, headers in finals]
    assert len(calls) == 2 * CHAOS_IDS
    assert len(set(calls)) == 2 * CHAOS_IDS
