"""The DataPlane without a transport: routing, checks, metadata, repository, deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from streamdag.errors import (
    ConfigError,
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    PipelineNotFound,
    Unavailable,
)
from streamdag.pipeline import PipelineSpec, compile_plan, parse_spec
from streamdag.protocol import decode_response, encode_request
from streamdag.runtimes import TensorSpec
from streamdag.serving import DataPlane, RepositoryEntry

from .conftest import write_spec
from .fake_gateway import PIPELINE, FakeGateway


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def spec_and_models(tmp_path: Path) -> tuple[PipelineSpec, ModuleType]:
    return write_spec(tmp_path)


@pytest.fixture
def with_plane(
    spec_and_models: tuple[PipelineSpec, ModuleType],
) -> Callable[[Callable[[DataPlane], Coroutine[Any, Any, Any]]], Any]:
    """Run ``scenario(dataplane)`` against a started DataPlane with a fake gateway."""

    def go(scenario: Callable[[DataPlane], Coroutine[Any, Any, Any]]) -> Any:
        async def main() -> Any:
            plane = DataPlane([compile_plan(spec_and_models[0])], gateway=FakeGateway())
            await plane.start()
            try:
                return await scenario(plane)
            finally:
                await plane.stop()

        return run(main())

    return go


def x_request(raw: bool = True, **kwargs: Any) -> Any:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    return encode_request("scale", {"x": x}, id="r-1", raw=raw, **kwargs)


def test_answers_in_the_form_of_the_request(with_plane: Any) -> None:
    async def scenario(plane: DataPlane) -> None:
        raw = await plane.infer(x_request(raw=True))
        typed = await plane.infer(x_request(raw=False))
        assert len(raw.raw_output_contents) == 1 and not raw.outputs[0].contents.fp32_contents
        assert not typed.raw_output_contents and len(typed.outputs[0].contents.fp32_contents) == 6
        for response in (raw, typed):
            assert (response.model_name, response.model_version, response.id) == (
                "scale",
                "1",
                "r-1",
            )
            y = decode_response(response)["y"]
            np.testing.assert_array_equal(y, np.arange(6, dtype=np.float32).reshape(2, 3) * 2)

    with_plane(scenario)


def test_returns_only_the_requested_outputs(with_plane: Any) -> None:
    async def scenario(plane: DataPlane) -> None:
        text = np.array([b"ab"], dtype=object)
        request = encode_request("upper", {"text": text}, outputs=["length"])
        response = await plane.infer(request)
        assert [t.name for t in response.outputs] == ["length"]
        with pytest.raises(
            InvalidInput, match="unknown output 'nope'; it returns 'upper', 'length'"
        ):
            await plane.infer(encode_request("upper", {"text": text}, outputs=["nope"]))

    with_plane(scenario)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"x": np.zeros((2, 3), np.int64)},
            "model scale: input 'x': expected datatype FP32, got INT64",
        ),
        ({"x": np.zeros((2, 4), np.float32)}, "expected shape [-1, 3], got [2, 4]"),
        ({"z": np.zeros((2, 3), np.float32)}, "missing input 'x'; it takes 'x'"),
        (
            {"x": np.zeros((2, 3), np.float32), "z": np.zeros((2, 3), np.float32)},
            "unknown input 'z'; it takes 'x'",
        ),
    ],
)
def test_inputs_are_checked_against_the_declaration(
    with_plane: Any, arrays: dict[str, Any], message: str
) -> None:
    async def scenario(plane: DataPlane) -> None:
        with pytest.raises(InvalidInput) as caught:
            await plane.infer(encode_request("scale", arrays))
        assert message in str(caught.value)

    with_plane(scenario)


def test_unknown_models_and_versions_are_not_found(with_plane: Any) -> None:
    async def scenario(plane: DataPlane) -> None:
        with pytest.raises(ModelNotFound, match="model nope not found"):
            await plane.infer(encode_request("nope", {"x": [1.0]}))
        with pytest.raises(ModelNotFound, match="model scale version 2 not found"):
            plane.model_metadata("scale", "2")
        assert plane.model_metadata("scale", "1").versions == ["1"]
        with pytest.raises(PipelineNotFound, match="pipeline scale not found"):
            await plane.infer_pipeline("scale", x_request())

    with_plane(scenario)


def test_metadata_reports_variable_dimensions_as_minus_one(with_plane: Any) -> None:
    async def scenario(plane: DataPlane) -> None:
        onnx = plane.model_metadata("add_one")
        assert onnx.platform == "onnxruntime_onnx"
        assert onnx.inputs == [TensorSpec("x", "FP32", [-1, 2])]
        assert plane.model_metadata("upper").outputs[1] == TensorSpec("length", "INT32", [-1])
        # A function handler declares nothing: no tensors to report.
        echo = plane.model_metadata("echo")
        assert (echo.platform, echo.inputs, echo.outputs) == ("python", [], [])
        pipe = plane.model_metadata(PIPELINE)
        assert (pipe.platform, pipe.versions) == ("streamdag_pipeline", [])

    with_plane(scenario)


def test_unload_and_load_through_the_repository(with_plane: Any) -> None:
    async def scenario(plane: DataPlane) -> None:
        await plane.unload("scale")
        assert not plane.model_ready("scale")
        assert RepositoryEntry("scale", "1", "UNAVAILABLE", "unloaded") in plane.repository_index()
        assert "scale" not in [e.name for e in plane.repository_index(ready_only=True)]
        with pytest.raises(Unavailable, match="model scale is not ready"):
            await plane.infer(x_request())
        # Metadata still answers for an unloaded model.
        assert plane.model_metadata("scale").inputs[0].name == "x"
        await plane.load("scale")
        assert plane.model_ready("scale")
        assert (await plane.infer(x_request())).id == "r-1"
        with pytest.raises(InvalidInput, match="echo-pipe is a pipeline"):
            await plane.unload(PIPELINE)
        with pytest.raises(ModelNotFound):
            await plane.load("nope")

    with_plane(scenario)


def test_the_timeout_parameter_bounds_a_model_call(with_plane: Any) -> None:
    async def scenario(plane: DataPlane) -> None:
        slow = encode_request("slow", {"x": [[0.5]]}, id="late-1", parameters={"timeout": 50_000})
        with pytest.raises(DeadlineExceeded, match="request late-1 to model slow did not finish"):
            await plane.infer(slow)
        for bad in (0, -1.0, "soon", True):
            request = encode_request("scale", {"x": [[1.0, 2.0, 3.0]]}, parameters={"timeout": bad})
            with pytest.raises(
                InvalidInput,
                match=r"parameters\.timeout: must be a positive number of microseconds",
            ):
                await plane.infer(request)

    with_plane(scenario)


def test_a_parameter_without_a_value_is_refused_before_anything_runs(
    spec_and_models: tuple[PipelineSpec, ModuleType],
) -> None:
    """protobuf can carry a parameter with no value (no JSON body can); it is invalid input
    on the model and the pipeline routes, and never reaches the model or the gateway."""
    gateway = FakeGateway()
    _, models = spec_and_models
    models.Scale.CALLS.clear()

    async def main() -> None:
        plane = DataPlane([compile_plan(spec_and_models[0])], gateway=gateway)
        await plane.start()
        try:
            for target in ("scale", PIPELINE):
                request = encode_request(target, {"x": [[1.0, 2.0, 3.0]]}, id="empty-1")
                request.parameters["blank"].Clear()
                with pytest.raises(InvalidInput, match=r"parameters\.blank: parameter has no"):
                    await plane.infer(request)
                del request.parameters["blank"]
                request.inputs[0].parameters["blank"].Clear()
                with pytest.raises(InvalidInput, match=r"inputs\[0\]\.parameters\.blank"):
                    await plane.infer(request)
                with pytest.raises(InvalidInput, match=r"inputs\[0\]\.parameters\.blank"):
                    await plane.infer_pipeline(PIPELINE, request)
        finally:
            await plane.stop()

    run(main())
    assert gateway.calls == [] and models.Scale.CALLS == []


def test_pipeline_requests_go_to_the_gateway_with_the_shorter_deadline(
    spec_and_models: tuple[PipelineSpec, ModuleType],
) -> None:
    gateway = FakeGateway()

    async def main() -> None:
        plane = DataPlane([compile_plan(spec_and_models[0])], gateway=gateway)
        await plane.start()
        request = encode_request(
            PIPELINE, {"x": [1, 2]}, id="p-1", parameters={"timeout": 9_000_000}
        )
        response, headers = await plane.infer_with_headers(
            request, timeout=3.0, headers={"x-a": "b"}
        )
        assert response.id == "p-1" and headers["x-pipeline-reply"] == PIPELINE
        request = encode_request(
            PIPELINE, {"x": [1, 2]}, id="p-2", parameters={"timeout": 2_000_000}
        )
        await plane.infer(request, timeout=3.0)
        await plane.stop()

    run(main())
    assert [(c.request.id, c.timeout, c.headers) for c in gateway.calls] == [
        ("p-1", 3.0, {"x-a": "b"}),
        ("p-2", 2.0, {}),
    ]
    assert gateway.started and gateway.stopped


def test_a_malformed_pipeline_request_never_reaches_the_gateway(
    spec_and_models: tuple[PipelineSpec, ModuleType],
) -> None:
    gateway = FakeGateway()
    request = encode_request(PIPELINE, {"x": np.zeros(4, np.float32)})
    request.inputs[0].shape[:] = [5]  # claims more than the raw bytes hold

    async def main() -> None:
        plane = DataPlane([compile_plan(spec_and_models[0])], gateway=gateway)
        with pytest.raises(InvalidInput, match="raw contents hold 16 bytes but shape"):
            await plane.infer(request)

    run(main())
    assert gateway.calls == []


def test_conflicting_declarations_are_refused(
    spec_and_models: tuple[PipelineSpec, ModuleType], tmp_path: Path
) -> None:
    spec, models = spec_and_models
    module = models.__name__
    other = parse_spec(
        {
            "name": "other",
            "models": {"scale": {"runtime": "python", "handler": f"{module}:Upper"}},
            "steps": [{"name": "s", "model": "scale"}],
        },
        base_dir=tmp_path,
        source="other.yaml",
    )
    with pytest.raises(
        ConfigError,
        match=r"model scale is declared differently in .*pipeline\.yaml and other\.yaml",
    ):
        DataPlane([compile_plan(spec), compile_plan(other)])
    same = parse_spec(
        {
            "name": "same",
            "models": {"scale": spec.models["scale"].model_dump()},
            "steps": [{"name": "s", "model": "scale"}],
        },
        base_dir=tmp_path,
    )
    assert DataPlane([compile_plan(spec), compile_plan(same)]).models().count("scale") == 1
    with pytest.raises(ConfigError, match="model scale has the name of a pipeline"):
        DataPlane([compile_plan(same)], gateway=FakeGateway(names=("scale",)))


# What a pipeline's workers would refuse is refused at the door ---------------------------


@pytest.fixture
def checked_plane(
    spec_and_models: tuple[PipelineSpec, ModuleType], tmp_path: Path
) -> Callable[..., Any]:
    """Run ``scenario(dataplane, gateway)`` with the pipeline ``checked`` (version 3) whose
    ``steps`` are given, over a fake gateway."""
    module = spec_and_models[1].__name__

    def go(
        steps: list[dict[str, Any]], scenario: Callable[..., Coroutine[Any, Any, Any]]
    ) -> FakeGateway:
        spec = parse_spec(
            {
                "name": "checked",
                "version": 3,
                "models": {
                    "scale": {"runtime": "python", "handler": f"{module}:Scale"},
                    "upper": {"runtime": "python", "handler": f"{module}:Upper"},
                    "echo": {"runtime": "python", "handler": f"{module}:echo"},
                    "pair": {
                        "runtime": "python",
                        "handler": f"{module}:echo",
                        "inputs": [
                            {"name": "x", "datatype": "FP32", "shape": [-1, 3]},
                            {"name": "length", "datatype": "INT32", "shape": [-1]},
                        ],
                    },
                },
                "steps": steps,
            },
            base_dir=tmp_path,
        )
        gateway = FakeGateway(names=("checked",))

        async def main() -> None:
            plane = DataPlane([compile_plan(spec)], gateway=gateway)
            await plane.start()
            try:
                await scenario(plane)
            finally:
                await plane.stop()

        run(main())
        return gateway

    return go


X = np.zeros((2, 3), np.float32)
TEXT = np.array([b"a", b"b"], dtype=object)


def test_a_pipeline_takes_only_the_inputs_its_first_model_declares(
    checked_plane: Callable[..., FakeGateway],
) -> None:
    async def scenario(plane: DataPlane) -> None:
        extra = encode_request("checked", {"x": X, "y": X})
        with pytest.raises(InvalidInput) as caught:
            await plane.infer(extra)
        assert str(caught.value) == (
            "pipeline checked: unknown input 'y' for model scale (step s), which takes 'x'"
        )
        with pytest.raises(InvalidInput, match="missing input 'x' of model scale"):
            await plane.infer_pipeline("checked", encode_request("", {"y": X}))
        with pytest.raises(InvalidInput, match="input 'x': expected datatype FP32, got INT64"):
            await plane.infer(encode_request("checked", {"x": X.astype(np.int64)}))
        await plane.infer(encode_request("checked", {"x": X}, id="ok-1"))

    gateway = checked_plane([{"name": "s", "model": "scale"}], scenario)
    assert [c.request.id for c in gateway.calls] == ["ok-1"]


def test_tensors_no_step_reads_are_refused_and_undeclared_models_take_any(
    checked_plane: Callable[..., FakeGateway],
) -> None:
    named = [
        {"name": "s", "model": "scale", "inputs": ["pipeline.inputs.x"]},
        {"name": "u", "model": "upper", "inputs": ["pipeline.inputs.text"]},
    ]

    async def refuses_strays(plane: DataPlane) -> None:
        stray = encode_request("checked", {"x": X, "text": TEXT, "z": X})
        with pytest.raises(InvalidInput) as caught:
            await plane.infer(stray)
        assert str(caught.value) == (
            "pipeline checked: unknown input 'z'; its steps read 'text', 'x'"
        )
        await plane.infer(encode_request("checked", {"x": X, "text": TEXT}, id="ok-2"))

    assert [c.request.id for c in checked_plane(named, refuses_strays).calls] == ["ok-2"]

    # A step that reads the whole request with a model that declares nothing takes anything.
    loose = [{"name": "e", "model": "echo"}, *named]

    async def takes_any(plane: DataPlane) -> None:
        await plane.infer(encode_request("checked", {"x": X, "text": TEXT, "z": X}, id="ok-3"))

    assert [c.request.id for c in checked_plane(loose, takes_any).calls] == ["ok-3"]

    # A join step gets the rest of its model's inputs from the steps it reads.
    joined = [
        {"name": "u", "model": "upper", "inputs": ["pipeline.inputs.text"]},
        {"name": "j", "model": "pair", "inputs": ["pipeline.inputs.x", "u.outputs.length"]},
    ]

    async def joins(plane: DataPlane) -> None:
        await plane.infer(encode_request("checked", {"x": X, "text": TEXT}, id="ok-4"))
        with pytest.raises(InvalidInput, match="input 'x': expected shape"):
            await plane.infer(encode_request("checked", {"x": X[:, :2], "text": TEXT}))

    assert [c.request.id for c in checked_plane(joined, joins).calls] == ["ok-4"]


def test_a_pipeline_refuses_outputs_its_last_model_does_not_declare(
    checked_plane: Callable[..., FakeGateway],
) -> None:
    async def scenario(plane: DataPlane) -> None:
        with pytest.raises(InvalidInput) as caught:
            await plane.infer(encode_request("checked", {"x": X}, outputs=["z"]))
        assert str(caught.value) == "pipeline checked: unknown output 'z'; it returns 'y'"
        await plane.infer(encode_request("checked", {"x": X}, id="ok-5", outputs=["y"]))

    gateway = checked_plane([{"name": "s", "model": "scale"}], scenario)
    assert [c.request.id for c in gateway.calls] == ["ok-5"]

    async def any_output(plane: DataPlane) -> None:
        await plane.infer(encode_request("checked", {"x": X}, id="ok-6", outputs=["z"]))

    gateway = checked_plane([{"name": "e", "model": "echo"}], any_output)
    assert [c.request.id for c in gateway.calls] == ["ok-6"]


def test_a_pipeline_has_the_one_version_its_spec_names(
    checked_plane: Callable[..., FakeGateway],
) -> None:
    async def scenario(plane: DataPlane) -> None:
        for version in ("AAA", "7"):
            with pytest.raises(PipelineNotFound) as caught:
                await plane.infer(encode_request("checked", {"x": X}, model_version=version))
            assert str(caught.value) == f"pipeline checked version {version} not found"
            with pytest.raises(PipelineNotFound):
                plane.model_metadata("checked", version)
            with pytest.raises(PipelineNotFound):
                plane.model_ready("checked", version)
        for version in ("", "3"):
            await plane.infer(encode_request("checked", {"x": X}, model_version=version))
        assert plane.model_metadata("checked").versions == ["3"]
        assert plane.model_ready("checked", "3")

    gateway = checked_plane([{"name": "s", "model": "scale"}], scenario)
    assert [c.request.model_version for c in gateway.calls] == ["", "3"]
