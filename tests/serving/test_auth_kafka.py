"""Bearer tokens in front of a pipeline on the real broker: unmodified tritonclient without
a token, with a wrong one and with a valid one on both doors; only the valid requests reach
the inputs topic, and the caller's name travels with each request to its results and to
the errors topic. A job's result and the web view's request search are the submitter's
alone, or an administrator's; a job id never finds a synchronous call's answer."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from kafka_support import read_topic, run_pipeline
from server_support import running_server
from tritonclient.utils import InferenceServerException

from streamdag.kafka.headers import CALLER, get_header
from streamdag.pipeline import PipelineSpec, compile_plan, load_spec
from streamdag.serving import KafkaGateway
from streamdag.serving.auth import Tokens

pytestmark = pytest.mark.kafka

SPEC = """
name: "{name}"
partitions: 2
timeout_ms: 20000
retry: {{max_attempts: 1}}
models:
  double: {{runtime: python, handler: "gateway_models:double"}}
  add-one: {{runtime: python, handler: "gateway_models:add_one"}}
steps:
  - {{name: double, model: double}}
  - {{name: add-one, model: add-one, inputs: [double.outputs]}}
"""
TOKENS = Tokens({"radiology": "r-token-1", "billing": "b-token-2"})


@pytest.fixture
def spec(tmp_path: Path, unique_name: Callable[[str], str]) -> PipelineSpec:
    shutil.copy(Path(__file__).with_name("gateway_models.py"), tmp_path / "gateway_models.py")
    path = tmp_path / "pipeline.yaml"
    path.write_text(SPEC.format(name=unique_name("auth")))
    return load_spec(path)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_only_callers_with_a_token_reach_the_pipeline_and_are_named(
    bootstrap: str, spec: PipelineSpec
) -> None:
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    with (
        run_pipeline(spec, bootstrap),
        running_server(
            [spec], KafkaGateway([compile_plan(spec)], bootstrap), auth_tokens=TOKENS
        ) as server,
    ):
        http = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        grpc = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")

        def http_infer(rid: str, headers: dict[str, str], value: np.ndarray = x) -> np.ndarray:
            inputs = [triton_http.InferInput("x", list(value.shape), "FP32")]
            inputs[0].set_data_from_numpy(value)
            return http.infer(spec.name, inputs, request_id=rid, headers=headers).as_numpy("x")

        def grpc_infer(rid: str, headers: dict[str, str]) -> np.ndarray:
            inputs = [triton_grpc.InferInput("x", [1, 2], "FP32")]
            inputs[0].set_data_from_numpy(x)
            result = grpc.infer(spec.name, inputs, request_id=rid, headers=headers)
            return result.as_numpy("x")

        for rid, headers in (("http-none", {}), ("http-wrong", bearer("nope"))):
            with pytest.raises(InferenceServerException) as info:
                http_infer(rid, headers)
            assert info.value.status() == "401"
        for rid, headers in (("grpc-none", {}), ("grpc-wrong", bearer("nope"))):
            with pytest.raises(InferenceServerException) as info:
                grpc_infer(rid, headers)
            assert info.value.status() == "StatusCode.UNAUTHENTICATED"
        # A caller cannot claim another's name: the door names it from its token.
        forged = {CALLER: "billing"}
        np.testing.assert_array_equal(
            http_infer("http-ok", {**bearer("r-token-1"), **forged}), x * 2 + 1
        )
        np.testing.assert_array_equal(grpc_infer("grpc-ok", bearer("b-token-2")), x * 2 + 1)
        assert http.is_server_live()  # health checks need no token
        assert grpc.is_server_ready()
        with pytest.raises(InferenceServerException) as failed:  # double refuses 13
            http_infer("http-13", bearer("r-token-1"), np.array([[13.0]], dtype=np.float32))
        assert failed.value.status() == "500"
        http.close()
        grpc.close()

    def callers(topic: str, until: int) -> list[tuple[str, str | None]]:
        records = read_topic(bootstrap, f"streamdag.{spec.name}.{topic}", until=until, settle=2)
        return sorted((key.decode(), get_header(h, CALLER)) for key, _, h in records if key)

    expected = [("grpc-ok", "billing"), ("http-13", "radiology"), ("http-ok", "radiology")]
    assert callers("inputs", until=3) == expected
    assert callers("outputs", until=3) == expected  # results and the error reply
    failures = read_topic(bootstrap, f"streamdag.{spec.name}.errors", until=1, settle=1)
    assert [(key.decode(), get_header(h, CALLER)) for key, _, h in failures if key] == [
        ("http-13", "radiology")
    ]


def poll_job(url: str, headers: dict[str, str]) -> httpx.Response:
    """The job's answer once it is not pending (202) any more."""
    for _ in range(100):
        answer = httpx.get(url, headers=headers, timeout=30)
        if answer.status_code != 202:
            return answer
        time.sleep(0.2)
    return answer


def job_body(rid: str, x: float) -> dict[str, object]:
    return {"id": rid, "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [x]}]}


def test_a_job_result_and_the_request_search_are_the_submitters_alone(
    bootstrap: str, spec: PipelineSpec
) -> None:
    radiology, billing = bearer("r-token-1"), bearer("b-token-2")
    plan = compile_plan(spec)
    with run_pipeline(spec, bootstrap):
        with running_server(
            [spec], KafkaGateway([plan], bootstrap), auth_tokens=TOKENS, kafka=bootstrap
        ) as server:
            base = f"http://127.0.0.1:{server.http_port}"
            jobs = f"{base}/v2/pipelines/{spec.name}/jobs"
            submitted = httpx.post(jobs, json=job_body("scan-7", 3.0), headers=radiology)
            assert submitted.status_code == 202, submitted.text
            mine = poll_job(f"{jobs}/scan-7", radiology)
            assert mine.status_code == 200 and mine.json()["outputs"][0]["data"] == [7.0]
            # Another token holder who knows (or guesses) the id learns nothing of it.
            theirs = httpx.get(f"{jobs}/scan-7", headers=billing, timeout=30)
            assert theirs.status_code == 404
            assert theirs.json()["error"] == f"no job scan-7 in pipeline {spec.name}"
            # Nor through the web view: searching requests is for administrators.
            ui = f"{base}/ui/api/pipelines/{spec.name}"
            for headers in (radiology, billing):
                search = httpx.get(f"{ui}/requests/scan-7", headers=headers, timeout=60)
                assert search.status_code == 403, search.text
                assert "administrators" in search.json()["error"]
        # A gateway that did not take the job (a restart) keeps it the submitter's.
        with running_server(
            [spec], KafkaGateway([plan], bootstrap), auth_tokens=TOKENS
        ) as restarted:
            jobs = f"http://127.0.0.1:{restarted.http_port}/v2/pipelines/{spec.name}/jobs"
            assert httpx.get(f"{jobs}/scan-7", headers=billing, timeout=30).status_code == 404
            again = poll_job(f"{jobs}/scan-7", radiology)
            assert again.status_code == 200 and again.json()["outputs"][0]["data"] == [7.0]


def test_a_job_id_never_returns_a_synchronous_answer_even_after_a_restart(
    bootstrap: str, spec: PipelineSpec
) -> None:
    plan = compile_plan(spec)
    with run_pipeline(spec, bootstrap):
        for _ in range(2):  # the gateway that answered, then one that never saw the call
            with running_server([spec], KafkaGateway([plan], bootstrap)) as server:
                base = f"http://127.0.0.1:{server.http_port}/v2/pipelines/{spec.name}"
                answer = httpx.post(f"{base}/infer", json=job_body("sync-1", 1.0), timeout=30)
                assert answer.status_code == 200, answer.text
                job = httpx.get(f"{base}/jobs/sync-1", timeout=30)
                assert job.status_code == 404, job.text


def test_an_administrator_reads_every_job_and_searches_requests(
    bootstrap: str, spec: PipelineSpec, tmp_path: Path
) -> None:
    path = tmp_path / "tokens"
    path.write_text("radiology: r-token-1\nops: o-token-3 admin\n")
    tokens = Tokens.from_file(path)
    assert [tokens.is_admin(name) for name in tokens.names()] == [False, True]
    ops, radiology = bearer("o-token-3"), bearer("r-token-1")
    plan = compile_plan(spec)
    with run_pipeline(spec, bootstrap):
        with running_server(
            [spec], KafkaGateway([plan], bootstrap), auth_tokens=tokens, kafka=bootstrap
        ) as server:
            base = f"http://127.0.0.1:{server.http_port}"
            jobs = f"{base}/v2/pipelines/{spec.name}/jobs"
            submitted = httpx.post(
                jobs, json=job_body("scan-8", 4.0), headers={**radiology, "x-tenant": "acme"}
            )
            assert submitted.status_code == 202, submitted.text
            answer = poll_job(f"{jobs}/scan-8", ops)
            assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [9.0]
            search = httpx.get(
                f"{base}/ui/api/pipelines/{spec.name}/requests/scan-8", headers=ops, timeout=60
            )
            assert search.status_code == 200, search.text
            first = search.json()["hops"][0]
            assert first["headers"]["streamdag-caller"] == "radiology"
            assert first["headers"]["x-tenant"] == "acme"
        with running_server(
            [spec], KafkaGateway([plan], bootstrap), auth_tokens=tokens
        ) as restarted:
            jobs = f"http://127.0.0.1:{restarted.http_port}/v2/pipelines/{spec.name}/jobs"
            again = poll_job(f"{jobs}/scan-8", ops)
            assert again.status_code == 200 and again.json()["outputs"][0]["data"] == [9.0]
