"""A SASL_SSL broker (SCRAM-SHA-512 over TLS) reached with nothing but `--kafka-config
client.properties`: a fan-out + join pipeline, both front doors, `inspect` and `errors
--replay`; wrong settings fail fast with one line naming the cause; the password shows
in no output of any of it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from streamdag.broker import ClusterInfo, LocalCluster, free_port, free_port_run
from streamdag.kafka.connection import parse_properties
from streamdag.settings import get_settings

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

HERE = Path(__file__).parent
FAN = """
name: secured
guarantee: exactly_once
partitions: 2
models:
  split: {runtime: python, handler: "dag_models:split", outputs: [a, b]}
  left: {runtime: python, handler: "dag_models:left", outputs: [l]}
  right: {runtime: python, handler: "dag_models:failing_right", outputs: [r]}
  combine: {runtime: python, handler: "dag_models:combine", outputs: [total, parts]}
retry: {max_attempts: 1, backoff_ms: 10}
steps:
  - {name: split, model: split}
  - {name: left, model: left, inputs: [split.outputs.a]}
  - {name: right, model: right, inputs: [split.outputs.b]}
  - {name: both, model: combine, inputs: [left.outputs, right.outputs], join: inner}
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    settings = get_settings()
    local = LocalCluster(
        tmp_path_factory.mktemp("secured"), libs_dir=settings.kafka_libs, heap="512m"
    )
    info = local.start(nodes=1, port=free_port_run(1), security="sasl_ssl", timeout=120)
    try:
        yield info
    finally:
        local.stop()


def streamdag(*args: str) -> list[str]:
    return [sys.executable, "-m", "streamdag.cli.main", *args]


def run_cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        streamdag(*args), capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def test_a_pipeline_runs_end_to_end_with_only_client_properties(
    secured: ClusterInfo, tmp_path: Path
) -> None:
    assert secured.client_properties is not None
    props = str(secured.client_properties)
    password = parse_properties(secured.client_properties.read_text())["sasl.password"]
    shutil.copy(HERE.parent / "engine" / "dag_models.py", tmp_path / "dag_models.py")
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(FAN)
    outputs: list[str] = []
    http_port, grpc_port = free_port(), free_port()
    logs = {name: tmp_path / f"{name}.log" for name in ("run", "serve")}
    procs = []
    try:
        for name, args in (
            ("run", ["run", str(spec), "--kafka-config", props]),
            (
                "serve",
                [
                    "serve",
                    str(spec),
                    "--kafka-config",
                    props,
                    "--http-port",
                    str(http_port),
                    "--grpc-port",
                    str(grpc_port),
                ],
            ),
        ):
            with logs[name].open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        streamdag(*args), stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
                    )
                )
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError(logs["serve"].read_text())

        def body(rid: str, x: int) -> dict[str, object]:
            return {
                "id": rid,
                "inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [x]}],
            }

        rest = httpx.post(f"{base}/v2/pipelines/secured/infer", json=body("rest-1", 1), timeout=60)
        assert rest.status_code == 200, rest.text
        assert {o["name"]: o["data"] for o in rest.json()["outputs"]}["total"] == [17]

        client = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        x = triton_grpc.InferInput("x", [1], "INT64")
        x.set_data_from_numpy(np.array([2], dtype=np.int64))
        answer = client.infer("secured", [x], request_id="grpc-1", client_timeout=60)
        assert answer.as_numpy("total").tolist() == [29]

        failed = httpx.post(f"{base}/v2/pipelines/secured/infer", json=body("bad-7", 7), timeout=60)
        assert failed.status_code == 500 and "right branch cannot take 70" in failed.text

        traced = run_cli(
            "inspect", str(spec), "--request-id", "rest-1", "--kafka-config", props, cwd=tmp_path
        )
        assert traced.returncode == 0, traced.stderr
        assert "both" in traced.stdout and "outputs" in traced.stdout
        listed = run_cli("errors", str(spec), "--kafka-config", props, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert "bad-7" in listed.stdout
        replayed = run_cli("errors", str(spec), "--replay", "--kafka-config", props, cwd=tmp_path)
        assert replayed.returncode == 0, replayed.stderr
        assert "bad-7" in replayed.stdout
        outputs += [traced.stdout, traced.stderr, listed.stdout, listed.stderr]
        outputs += [replayed.stdout, replayed.stderr]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    outputs += [log.read_text() for log in logs.values()]
    assert all(password not in text for text in outputs)


@pytest.mark.parametrize(
    ("change", "expected", "within_s"),
    [
        # Refused credentials or an untrusted certificate do not mend by waiting: the
        # command does not sit out its 10 s wait for a broker.
        ({"sasl.password": "not-the-password"}, "authentication failed for sasl.username=", 8),
        ({"ssl.ca.location": None}, "TLS certificate is not trusted", 8),
        (
            {"security.protocol": "PLAINTEXT", "sasl.mechanism": None, "ssl.ca.location": None},
            "security.protocol is PLAINTEXT",
            30,
        ),
    ],
    ids=["wrong-password", "unknown-ca", "plaintext-on-tls"],
)
def test_wrong_settings_fail_fast_with_one_line(
    secured: ClusterInfo,
    tmp_path: Path,
    change: dict[str, str | None],
    expected: str,
    within_s: float,
) -> None:
    assert secured.client_properties is not None
    properties = parse_properties(secured.client_properties.read_text())
    for key, value in change.items():
        if value is None:
            properties.pop(key, None)
        else:
            properties[key] = value
    path = tmp_path / "client.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
    shutil.copy(HERE.parent / "engine" / "dag_models.py", tmp_path / "dag_models.py")
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(FAN)
    started = time.monotonic()
    result = run_cli("topics", str(spec), "--create", "--kafka-config", str(path), cwd=tmp_path)
    took = time.monotonic() - started
    assert result.returncode == 1
    assert took < within_s
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot reach Kafka at ") and expected in lines[0]
    assert "Traceback" not in result.stderr
    assert properties.get("sasl.password", "-") not in result.stderr + result.stdout
