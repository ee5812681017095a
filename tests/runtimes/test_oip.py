"""Runtime ``oip`` against a real ``streamdag serve`` (REST and gRPC on free ports).

The remote server serves the serving tests' models (tests/serving/serving_models.py); the
models under test are declared ``runtime: oip`` in a pipeline spec pointing at it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pytest
from serving.conftest import running_server
from serving.conftest import write_spec as write_serving_spec

from streamdag.broker import free_port
from streamdag.errors import ConfigError, InvalidInput, ModelError
from streamdag.pipeline import PipelineSpec, load_spec
from streamdag.runtimes import ModelMetadata, OipModel, TensorSpec, create_model
from streamdag.serving import Server

from ._helpers import objects

PIPELINE = """
name: remote-test
models:
  remote:
    runtime: oip
    protocol: {protocol}
    url: "{url}"
    model: {model}
{extra}
steps:
  - name: remote
    model: remote
"""

MakeModel = Callable[..., OipModel]


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ModuleType]]:
    """A real server of the serving tests' models, and their handler module."""
    spec, models = write_serving_spec(tmp_path_factory.mktemp("remote"))
    with running_server([spec]) as server:
        yield server, models


def url_of(server: Server, protocol: str) -> str:
    if protocol == "grpc":
        return f"127.0.0.1:{server.grpc_port}"
    return f"http://127.0.0.1:{server.http_port}"


def oip_spec(folder: Path, protocol: str, url: str, model: str, **extra: Any) -> PipelineSpec:
    lines = "\n".join(f"    {key}: {value}" for key, value in extra.items())
    path = folder / "pipeline.yaml"
    path.write_text(
        PIPELINE.format(protocol=protocol, url=url, model=model, extra=lines), encoding="utf-8"
    )
    return load_spec(path)


@pytest.fixture(params=["grpc", "rest"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_model(
    remote: tuple[Server, ModuleType], protocol: str, tmp_path: Path
) -> Iterator[MakeModel]:
    """``make_model("scale", timeout_ms=...)``: an unloaded OipModel built from a spec."""
    made: list[OipModel] = []

    def make(model: str, *, url: str | None = None, **extra: Any) -> OipModel:
        spec = oip_spec(tmp_path, protocol, url or url_of(remote[0], protocol), model, **extra)
        built = create_model("remote", spec.models["remote"], spec.base_dir)
        assert isinstance(built, OipModel)
        made.append(built)
        return built

    yield make
    for model in made:
        model.unload()


def test_load_takes_the_remote_metadata(make_model: MakeModel) -> None:
    model = make_model("scale")
    model.load()
    assert model.metadata() == ModelMetadata(
        name="remote",
        platform="python",
        inputs=[TensorSpec("x", "FP32", [-1, 3])],
        outputs=[TensorSpec("y", "FP32", [-1, 3])],
    )


def test_a_micro_batch_is_one_remote_call(
    make_model: MakeModel, remote: tuple[Server, ModuleType]
) -> None:
    model = make_model("scale")
    model.load()
    calls = remote[1].Scale.CALLS
    before = len(calls)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    outputs = model.predict({"x": x})
    assert list(outputs) == ["y"]
    assert outputs["y"].dtype == np.float32
    np.testing.assert_array_equal(outputs["y"], x * 2)
    assert calls[before:] == [4]


def test_bytes_tensors_round_trip(make_model: MakeModel) -> None:
    model = make_model("upper")
    model.load()
    # Not UTF-8: REST must carry it base64-encoded, gRPC as it is.
    text = objects(b"chest pain", b"caf\xc3\xa9", b"\xff\x00raw")
    outputs = model.predict({"text": text})
    assert outputs["upper"].dtype == object
    assert list(outputs["upper"]) == [b"CHEST PAIN", b"CAF\xc3\xa9", b"\xff\x00RAW"]
    assert outputs["length"].dtype == np.int32
    assert outputs["length"].tolist() == [10, 5, 5]


def test_input_the_remote_rejects_is_invalid_input(make_model: MakeModel) -> None:
    model = make_model("scale")
    model.load()
    with pytest.raises(InvalidInput) as info:
        model.predict({"x": np.zeros((2, 2), dtype=np.float32)})
    assert str(info.value).startswith("model remote: ")
    assert "expected shape [-1, 3], got [2, 2]" in str(info.value)


@pytest.mark.parametrize(
    ("name", "inputs", "message"),
    [
        ("scale", {"x": np.array([[-1, 0, 0]], dtype=np.float32)}, "rows starting with -1"),
        ("boom", {"x": np.zeros((1, 1), dtype=np.float32)}, "the model fell over"),
    ],
)
def test_a_failing_remote_model_is_a_model_error(
    make_model: MakeModel, name: str, inputs: dict[str, Any], message: str
) -> None:
    model = make_model(name)
    model.load()
    with pytest.raises(ModelError) as info:
        model.predict(inputs)
    assert str(info.value).startswith("model remote: ")
    assert message in str(info.value)


def test_a_missing_remote_model_is_a_config_error(make_model: MakeModel) -> None:
    model = make_model("nope")
    with pytest.raises(ConfigError) as info:
        model.load()
    assert "model remote: remote model 'nope' cannot be used" in str(info.value)
    assert "model nope not found" in str(info.value)


def test_an_unreachable_server_fails_load_after_the_attempts(
    make_model: MakeModel, protocol: str
) -> None:
    port = free_port()  # nothing listens there
    url = f"127.0.0.1:{port}" if protocol == "grpc" else f"http://127.0.0.1:{port}"
    model = make_model("scale", url=url, attempts=2, backoff_ms=10)
    with pytest.raises(ModelError) as info:
        model.load()
    assert "gave up after 2 attempts" in str(info.value)


def test_a_call_past_timeout_ms_is_a_model_error(make_model: MakeModel) -> None:
    model = make_model("slow", timeout_ms=300)
    model.load()
    with pytest.raises(ModelError) as info:
        model.predict({"x": np.array([[1.0]], dtype=np.float32)})
    text = str(info.value)
    assert "DEADLINE_EXCEEDED" in text or "no answer within" in text


def test_predict_needs_load(make_model: MakeModel) -> None:
    model = make_model("scale")
    with pytest.raises(ModelError, match="not loaded"):
        model.predict({"x": np.zeros((1, 3), dtype=np.float32)})
    model.load()
    model.unload()
    with pytest.raises(ModelError, match="not loaded"):
        model.metadata()


@pytest.mark.parametrize(
    ("protocol", "url"),
    [("grpc", "http://localhost:8001"), ("grpc", "host:1/path"), ("rest", "ftp://host:1")],
)
def test_an_unusable_url_is_a_config_error(tmp_path: Path, protocol: str, url: str) -> None:
    spec = oip_spec(tmp_path, protocol, url, "scale")
    model = create_model("remote", spec.models["remote"], spec.base_dir)
    with pytest.raises(ConfigError, match=r"^model remote: url "):
        model.load()


def test_retry_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="attempts"):
        oip_spec(tmp_path, "grpc", "localhost:1", "m", attempts=0)


def test_a_server_serves_an_oip_model(
    remote: tuple[Server, ModuleType], protocol: str, tmp_path: Path
) -> None:
    """streamdag in front of streamdag: REST in, the oip runtime out to the remote one."""
    spec = oip_spec(tmp_path, protocol, url_of(remote[0], protocol), "scale")
    body = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3] * 2}]}
    with running_server([spec]) as front:
        base = f"http://127.0.0.1:{front.http_port}/v2/models/remote"
        with httpx.Client(trust_env=False) as client:
            metadata = client.get(base).json()
            reply = client.post(f"{base}/infer", json=body)
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == [2, 4, 6] * 2
