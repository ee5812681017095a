"""The REST door's OpenAPI document: valid OpenAPI 3, describing every OIP route (the
inference routes too, which FastAPI does not see), and its docs page."""

from __future__ import annotations

import httpx
import pytest
from openapi_spec_validator import validate

from .conftest import Served


@pytest.fixture(scope="module")
def document(served: Served) -> dict[str, object]:
    reply = httpx.get(f"{served.http_url}/openapi.json")
    assert reply.status_code == 200
    body: dict[str, object] = reply.json()
    return body


def test_the_document_validates(document: dict[str, object]) -> None:
    validate(document)


def test_the_document_describes_every_oip_route(document: dict[str, object]) -> None:
    paths = document["paths"]
    assert isinstance(paths, dict)
    for path, method in [
        ("/v2/health/live", "get"),
        ("/v2", "get"),
        ("/v2/models/{model}", "get"),
        ("/v2/models/{model}/infer", "post"),
        ("/v2/models/{model}/versions/{version}/infer", "post"),
        ("/v2/pipelines/{pipeline}", "get"),
        ("/v2/pipelines/{pipeline}/infer", "post"),
        ("/v2/pipelines/{pipeline}/jobs", "post"),
        ("/v2/pipelines/{pipeline}/jobs/{job}", "get"),
        ("/v2/repository/index", "post"),
    ]:
        assert method in paths[path], path
    infer = paths["/v2/models/{model}/infer"]["post"]
    schema = infer["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/InferenceRequest"}


def test_the_docs_page_loads_the_document(served: Served) -> None:
    reply = httpx.get(f"{served.http_url}/docs")
    assert reply.status_code == 200
    assert "/openapi.json" in reply.text
