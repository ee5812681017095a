"""The public surface of streamdag.serving."""

from __future__ import annotations

from pathlib import Path

import grpc

import streamdag.serving
from streamdag.pipeline import compile_plan, load_spec
from streamdag.serving import GRPC_STATUS, HTTP_STATUS


def test_public_api_is_locked() -> None:
    assert sorted(streamdag.serving.__all__) == [
        "AdaptiveBatcher",
        "DataPlane",
        "GRPC_STATUS",
        "HTTP_STATUS",
        "InferenceServicer",
        "KafkaGateway",
        "ModelDescription",
        "PipelineGateway",
        "PipelineReadiness",
        "RepositoryEntry",
        "Server",
        "ServerMetadata",
        "build_gateway",
        "create_app",
        "event_loop_factory",
        "serve",
    ]
    for name in streamdag.serving.__all__:
        assert getattr(streamdag.serving, name) is not None


def test_the_doors_run_on_uvloop_where_it_is_installed() -> None:
    import asyncio

    import uvloop

    factory = streamdag.serving.event_loop_factory()
    assert factory is not None
    with asyncio.Runner(loop_factory=factory) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)


def test_each_front_door_maps_error_codes_in_one_table() -> None:
    assert HTTP_STATUS == {
        "invalid_argument": 400,
        "not_found": 404,
        "resource_exhausted": 413,
        "unauthenticated": 401,
        "permission_denied": 403,
        "deadline_exceeded": 504,
        "unavailable": 503,
        "model_error": 500,
        "data_loss": 500,
        "internal": 500,
    }
    assert GRPC_STATUS == {
        "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
        "not_found": grpc.StatusCode.NOT_FOUND,
        "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
        "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
        "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
        "deadline_exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
        "unavailable": grpc.StatusCode.UNAVAILABLE,
        "data_loss": grpc.StatusCode.DATA_LOSS,
    }


def test_build_gateway_serves_the_pipelines_of_the_specs(tmp_path: Path) -> None:
    assert streamdag.serving.build_gateway([], "localhost:9092") is None
    spec = tmp_path / "p.yaml"
    spec.write_text(
        "name: gw-api\nmodels:\n  m: {runtime: python, handler: os:getcwd}\n"
        "steps:\n  - {name: s, model: m}\n"
    )
    gateway = streamdag.serving.build_gateway([compile_plan(load_spec(spec))], "localhost:9092")
    assert isinstance(gateway, streamdag.serving.KafkaGateway)
    assert gateway.pipelines() == ["gw-api"]
