"""The REST door's OpenAPI document (``/openapi.json``, shown at ``/docs``).

FastAPI describes the routes it resolves; the inference routes are plain Starlette routes
(see ``rest.create_app``), so their paths and the OIP JSON bodies are added here, with
the schemas of the OIP REST specification (KServe's ``open_inference_rest.yaml``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

__all__ = ["install_openapi"]

_TENSOR_DATA: dict[str, Any] = {
    "description": "The tensor's elements in row-major order, flat or nested by shape.",
    "type": "array",
    "items": {},
}
_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]
    },
}
_SCHEMAS: dict[str, Any] = {
    "InferParameters": _PARAMETERS,
    "RequestInput": {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string", "example": "FP32"},
            "parameters": {"$ref": "#/components/schemas/InferParameters"},
            "data": _TENSOR_DATA,
        },
    },
    "RequestOutput": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "parameters": {"$ref": "#/components/schemas/InferParameters"},
        },
    },
    "InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"$ref": "#/components/schemas/InferParameters"},
            "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/RequestInput"}},
            "outputs": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/RequestOutput"},
            },
        },
    },
    "ResponseOutput": {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string"},
            "parameters": {"$ref": "#/components/schemas/InferParameters"},
            "data": _TENSOR_DATA,
        },
    },
    "InferenceResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {"$ref": "#/components/schemas/InferParameters"},
            "outputs": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/ResponseOutput"},
            },
        },
    },
    "InferenceError": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
}


def _infer_operation(summary: str, operation_id: str, names: list[str]) -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/InferenceError"}
    return {
        "summary": summary,
        "operationId": operation_id,
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names
        ],
        "requestBody": {
            "required": True,
            "description": "An OIP JSON request; with the binary tensor extension "
            "(Inference-Header-Content-Length), the JSON header then the tensors' bytes.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "200": {
                "description": "The outputs.",
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/InferenceResponse"}
                    }
                },
            },
            "default": {
                "description": "An error: 400 bad input, 401 no valid token, 404 unknown "
                "name, 413 too large, 500 the model failed, 503 not ready, 504 timed out.",
                "content": {"application/json": {"schema": error}},
            },
        },
    }


_INFER_PATHS: dict[str, Any] = {
    "/v2/models/{model}/infer": {"post": _infer_operation("Run a model", "model_infer", ["model"])},
    "/v2/models/{model}/versions/{version}/infer": {
        "post": _infer_operation(
            "Run a version of a model", "model_version_infer", ["model", "version"]
        )
    },
    "/v2/pipelines/{pipeline}/infer": {
        "post": _infer_operation("Run a pipeline, request-reply", "pipeline_infer", ["pipeline"])
    },
}


def install_openapi(app: FastAPI, version: str) -> None:
    """Make ``app.openapi()`` (served at ``app.openapi_url``) describe every route: FastAPI's
    own, plus the inference routes and the OIP schemas. Built once, on first request."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=version,
                description="Open Inference Protocol (V2) over REST, with streamdag's "
                "pipelines, jobs and web view.",
                routes=app.routes,
            )
            document.setdefault("paths", {}).update(_INFER_PATHS)
            document.setdefault("components", {}).setdefault("schemas", {}).update(_SCHEMAS)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
