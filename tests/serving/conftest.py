"""Real servers on free ports for the serving tests (``server_support.running_server``).

One server (models from a spec in a temporary folder, plus a fake pipeline gateway) is
shared by the session; tests that need other settings start their own with
``running_server``. The handler module is copied beside the spec under a fresh name, so
the test can read the call logs of exactly the models that server loaded.

Never import ``tritonclient.grpc`` here: its protobuf messages clash with streamdag's in
one interpreter, so ``test_grpc.py`` runs it in a subprocess (triton_grpc_client.py).
"""

from __future__ import annotations

import importlib
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from onnx import TensorProto, helper, save
from server_support import running_server

from streamdag.pipeline import PipelineSpec, load_spec
from streamdag.serving import Server

from .fake_gateway import FakeGateway

MODELS = Path(__file__).parent / "serving_models.py"

SPEC = """
name: serving-test
models:
  scale:
    runtime: python
    handler: {module}:Scale
    batch: {{max_size: 64, max_wait_ms: 0}}
  scale_batched:
    runtime: python
    handler: {module}:BatchedScale
    batch: {{max_size: 64, max_wait_ms: 150}}
  upper:
    runtime: python
    handler: {module}:Upper
  echo:
    runtime: python
    handler: {module}:echo
  boom:
    runtime: python
    handler: {module}:boom
  slow:
    runtime: python
    handler: {module}:Slow
    batch: {{max_size: 1, max_wait_ms: 0}}
  add_one:
    runtime: onnx
    uri: add_one.onnx
steps:
  - name: scale
    model: scale
"""


@dataclass
class Served:
    """A running server and what the tests need to reach and inspect it."""

    server: Server
    gateway: FakeGateway | None
    models: ModuleType

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.server.http_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.http}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.server.grpc_port}"


def write_onnx(path: Path) -> None:
    """add_one: y = x + 1 for FP32 rows of two."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "add_one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))


def write_spec(folder: Path) -> tuple[PipelineSpec, ModuleType]:
    """The test spec in ``folder`` with its handler module; returns it and the module."""
    module = f"serving_models_{uuid.uuid4().hex[:12]}"
    shutil.copy(MODELS, folder / f"{module}.py")
    write_onnx(folder / "add_one.onnx")
    path = folder / "pipeline.yaml"
    path.write_text(SPEC.format(module=module))
    spec = load_spec(path)  # puts the folder on sys.path
    return spec, importlib.import_module(module)


@pytest.fixture(scope="session")
def spec_and_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineSpec, ModuleType]:
    return write_spec(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="session")
def served(spec_and_models: tuple[PipelineSpec, ModuleType]) -> Iterator[Served]:
    spec, models = spec_and_models
    gateway = FakeGateway()
    # The repository tests load and unload models.
    with running_server([spec], gateway, allow_repository_changes=True) as server:
        yield Served(server, gateway, models)


@pytest.fixture
def gateway(served: Served) -> FakeGateway:
    assert served.gateway is not None
    return served.gateway
