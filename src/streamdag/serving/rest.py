"""The REST front door: OIP V2 over HTTP (FastAPI), as Triton and MLServer serve it.

Each route converts the HTTP request, calls the ``DataPlane`` and converts the answer;
errors become OIP bodies ``{"error": "..."}`` with the status from ``HTTP_STATUS``.
With tokens, ``BearerAuth`` answers 401 before any route runs to a request without a
valid ``Authorization: Bearer <token>``, but on the health routes (and ``/metrics`` and
``/ui`` when opened); a pipeline request carries the token's name as ``streamdag-caller``,
and a job's result goes only to the name that submitted it, or to an administrator.
A model failure is 500, as Triton, MLServer and KServe answer it: the request was
valid, the server failed to serve it (422 would tell the caller to fix the request).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import asdict
from importlib.metadata import version as package_version
from typing import Any, Final
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette import status
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from streamdag.errors import (
    InvalidInput,
    PayloadTooLarge,
    RepositoryChangesRefused,
    StreamdagError,
    Unauthenticated,
)
from streamdag.kafka import KafkaConnection
from streamdag.kafka.headers import REQUEST_ID, forwarded
from streamdag.payloads import PayloadStore
from streamdag.protocol import Array, ModelInferRequest, ModelInferResponse, error_body
from streamdag.serving.auth import CALLER_STATE, Caller, Tokens
from streamdag.serving.checks import MAX_REQUEST_ID_LENGTH
from streamdag.serving.dataplane import DataPlane, ModelDescription
from streamdag.serving.offload import run_sized
from streamdag.serving.openapi import install_openapi
from streamdag.serving.rest_body import (
    HEADER_LENGTH,
    OutputForm,
    dumps,
    parse_infer_request,
    render_infer_response,
)
from streamdag.serving.ui import ui_router
from streamdag.settings import get_settings

__all__ = ["DOCS_PATH", "HTTP_STATUS", "OPENAPI_PATH", "BearerAuth", "create_app", "http_status"]

HTTP_STATUS: Final[dict[str, int]] = {
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
"""The one mapping from ``StreamdagError.code`` to HTTP status; other codes are 500."""

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Reply headers that describe this HTTP message, not the pipeline's reply.
_OWN_HEADERS = frozenset({"content-length", "content-type", "content-encoding", "connection"})
# Open to load balancers and orchestrators' probes, which carry no token.
_HEALTH = frozenset({"/v2/health/live", "/v2/health/ready"})
OPENAPI_PATH: Final = "/openapi.json"
DOCS_PATH: Final = "/docs"
# The docs page loads the document, and Swagger UI its OAuth2 redirect page.
_DOCS = frozenset({OPENAPI_PATH, DOCS_PATH, f"{DOCS_PATH}/oauth2-redirect"})


def http_status(code: str) -> int:
    return HTTP_STATUS.get(code, 500)


def create_app(
    dataplane: DataPlane,
    *,
    max_body_bytes: int | None = None,
    kafka: KafkaConnection | str | None = None,
    allow_repository_changes: bool | None = None,
    tokens: Tokens | None = None,
    open_metrics: bool = False,
    open_docs: bool = False,
    open_ui: bool = False,
    payloads: PayloadStore | None = None,
    ui_show_values: bool = False,
) -> FastAPI:
    """The FastAPI application of the REST front door over ``dataplane``; the web view reads
    the pipelines' topics through ``kafka`` (default: the ``STREAMDAG_*`` settings).
    Repository load and unload answer 403 unless ``allow_repository_changes`` (default:
    ``STREAMDAG_SERVE_ALLOW_REPOSITORY_CHANGES``); the repository index is always open.
    With ``tokens`` every route but the health routes needs one (``BearerAuth``);
    ``open_metrics``, ``open_docs`` and ``open_ui`` also leave ``/metrics``, the OpenAPI
    document and its page (``/openapi.json``, ``/docs``) and ``/ui`` open, and a job's
    result goes only to its submitter or an administrator. The web view reads values kept
    in the payload store ``payloads``, and shows tensors' values on request only with
    ``ui_show_values``."""
    settings = get_settings()
    limit = max_body_bytes or settings.serve_max_body_bytes
    if allow_repository_changes is None:
        allow_repository_changes = settings.serve_allow_repository_changes
    app = FastAPI(title="streamdag", openapi_url=OPENAPI_PATH, docs_url=DOCS_PATH, redoc_url=None)
    install_openapi(app, package_version("streamdag"))
    dp = dataplane

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        # The gateway's and served models' metrics; workers serve theirs on --metrics-port.
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _status(dp.live(), "server is not live")

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return _status(dp.ready(), "server is not ready")

    @app.get("/v2")
    async def server_metadata() -> Response:
        meta = dp.server_metadata()
        return _json({"name": meta.name, "version": meta.version, "extensions": meta.extensions})

    @app.get("/v2/models/{model}")
    @app.get("/v2/models/{model}/versions/{version}")
    async def model_metadata(model: str, version: str = "") -> Response:
        return _json(_metadata_json(dp.model_metadata(model, version)))

    @app.get("/v2/models/{model}/ready")
    @app.get("/v2/models/{model}/versions/{version}/ready")
    async def model_ready(model: str, version: str = "") -> Response:
        ready, reason = dp.model_readiness(model, version)
        return _status(ready, reason)

    async def model_infer(request: Request) -> Response:
        model, version = request.path_params["model"], request.path_params.get("version", "")
        infer_request, form, inputs = await _read_infer(request, limit, model, version)
        response, reply = await dp.infer_with_headers(
            infer_request, headers=_forwarded(request), inputs=inputs
        )
        content, header_length = await _render(response, form)
        return _infer_reply(content, header_length, reply, infer_request.id)

    async def pipeline_infer(request: Request) -> Response:
        pipeline = request.path_params["pipeline"]
        infer_request, form, inputs = await _read_infer(request, limit, pipeline, "")
        response, reply = await dp.infer_pipeline(
            pipeline, infer_request, headers=_forwarded(request), inputs=inputs
        )
        content, header_length = await _render(response, form)
        return _infer_reply(content, header_length, reply, infer_request.id)

    # The inference routes are plain Starlette routes, matched first: they read their
    # path parameters themselves, which spares every request FastAPI's dependency
    # resolution and the matching of the routes before them (a fifth of a small
    # request's time at the door).
    app.router.routes[:0] = [
        Route("/v2/models/{model}/infer", model_infer, methods=["POST"]),
        Route("/v2/models/{model}/versions/{version}/infer", model_infer, methods=["POST"]),
        Route("/v2/pipelines/{pipeline}/infer", pipeline_infer, methods=["POST"]),
    ]

    @app.get("/v2/pipelines/{pipeline}")
    async def pipeline_metadata(pipeline: str) -> Response:
        meta, description = dp.pipeline_metadata(pipeline)
        return _json({**_metadata_json(meta), **description})

    @app.post("/v2/pipelines/{pipeline}/jobs")
    async def pipeline_submit(request: Request, pipeline: str) -> Response:
        infer_request, _, _ = await _read_infer(request, limit, pipeline, "")
        job = await dp.submit(pipeline, infer_request, headers=_forwarded(request))
        location = f"/v2/pipelines/{quote(pipeline, safe='')}/jobs/{quote(job, safe='')}"
        return _json({"id": job}, 202, {**_id_header(job), "location": location})

    @app.get("/v2/pipelines/{pipeline}/jobs/{job}")
    async def pipeline_job(request: Request, pipeline: str, job: str) -> Response:
        request.state.request_id = job
        result = await dp.job(pipeline, job, caller=_job_reader(request, tokens))
        if result is None:
            return _json({"status": "pending"}, 202, _id_header(job))
        content, _ = await _render(result, OutputForm())
        return Response(content, media_type="application/json", headers=_id_header(job))

    @app.post("/v2/repository/index")
    async def repository_index(request: Request) -> Response:
        ready_only = _object(await _read_body(request, limit)).get("ready", False)
        if not isinstance(ready_only, bool):
            raise InvalidInput(f"ready: must be true or false, got {ready_only!r}")
        entries = dp.repository_index(ready_only=ready_only)
        return _json([asdict(entry) for entry in entries])

    @app.post("/v2/repository/models/{model}/load")
    async def repository_load(request: Request, model: str) -> Response:
        if not allow_repository_changes:
            raise RepositoryChangesRefused("load", model)
        # Triton's load parameters (config overrides, files) do not apply to spec models.
        await _read_body(request, limit)
        await dp.load(model)
        return Response(status_code=200)

    @app.post("/v2/repository/models/{model}/unload")
    async def repository_unload(request: Request, model: str) -> Response:
        if not allow_repository_changes:
            raise RepositoryChangesRefused("unload", model)
        await _read_body(request, limit)
        await dp.unload(model)
        return Response(status_code=200)

    app.include_router(
        ui_router(
            dp,
            kafka=kafka,
            payloads=payloads,
            restricted=tokens is not None,
            show_values=ui_show_values,
        )
    )
    if tokens is not None:
        app.add_middleware(
            BearerAuth,
            tokens=tokens,
            open_metrics=open_metrics,
            open_docs=open_docs,
            open_ui=open_ui,
        )
    app.add_exception_handler(StreamdagError, _on_streamdag_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
    return app


class BearerAuth:
    """ASGI middleware: a request needs ``Authorization: Bearer <token>`` with a token of
    ``tokens``, else it is answered 401 with an OIP error body and ``WWW-Authenticate:
    Bearer``, and no route runs. The health routes are always open, ``/metrics``, the API
    docs (``/openapi.json``, ``/docs``) and the web view (``/ui``) when ``open_metrics``,
    ``open_docs`` and ``open_ui``. The token's ``Caller`` is
    left in the request's state for the routes (on an open route, when a valid token came
    all the same)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: Tokens,
        open_metrics: bool = False,
        open_docs: bool = False,
        open_ui: bool = False,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.open_metrics = open_metrics
        self.open_docs = open_docs
        self.open_ui = open_ui

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization")
        if self._is_open(scope["path"]):
            # Open to all, but an administrator's token still opens what is theirs alone.
            if authorization:
                with contextlib.suppress(Unauthenticated):
                    caller = self.tokens.identify(authorization)
                    scope.setdefault("state", {})[CALLER_STATE] = caller
            await self.app(scope, receive, send)
            return
        try:
            caller = self.tokens.identify(authorization)
        except Unauthenticated as exc:
            if scope["type"] == "http":
                headers = {"www-authenticate": "Bearer"}
                refusal: ASGIApp = _json(error_body(exc), http_status(exc.code), headers)
            else:  # no route takes a websocket, but none gets past without a token
                refusal = WebSocketClose(code=status.WS_1008_POLICY_VIOLATION)
            await refusal(scope, receive, send)
            return
        scope.setdefault("state", {})[CALLER_STATE] = caller
        await self.app(scope, receive, send)

    def _is_open(self, path: str) -> bool:
        if path in _HEALTH:
            return True
        if path == "/metrics":
            return self.open_metrics
        if path in _DOCS:
            return self.open_docs
        return self.open_ui and (path == "/ui" or path.startswith("/ui/"))


async def _read_infer(
    request: Request, limit: int, name: str, version: str
) -> tuple[ModelInferRequest, OutputForm, dict[str, Array] | None]:
    """Parse an inference body; the request id is the body's ``id``, else the
    ``x-request-id`` header, else a new one, and error replies carry it too."""
    request.state.request_id = request.headers.get(REQUEST_ID) or uuid.uuid4().hex
    body = await _read_body(request, limit)
    infer_request, form, inputs = await run_sized(
        len(body),
        parse_infer_request,
        body,
        request.headers.get(HEADER_LENGTH),
        model_name=name,
        model_version=version,
    )
    if infer_request.id:
        request.state.request_id = infer_request.id
    else:
        infer_request.id = request.state.request_id
    return infer_request, form, inputs


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInput(f"Content-Length: {declared!r} is not a number of bytes")
        if int(declared) > limit:
            raise PayloadTooLarge(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked bodies announce no length
            raise PayloadTooLarge(size, limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "identity":
        return body
    # Off the event loop whatever its size: a small body may inflate to the limit.
    return await asyncio.to_thread(_decompress, body, encoding, limit)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise InvalidInput(f"Content-Encoding {encoding!r} is not supported; use gzip or deflate")
    inflater = zlib.decompressobj(wbits)
    try:
        # The limit holds for what the body inflates to, or a tiny body could exhaust memory.
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"request body is not valid {encoding} data: {exc}") from exc
    if len(out) > limit:
        raise PayloadTooLarge(len(out), limit)
    return out


async def _render(response: ModelInferResponse, form: OutputForm) -> tuple[bytes, int | None]:
    return await run_sized(response.ByteSize(), render_infer_response, response, form)


def _forwarded(request: Request) -> dict[str, str]:
    """The caller's headers that travel with a request through a pipeline, and the name of
    the caller's token; a ``streamdag-caller`` header the caller sent is dropped."""
    caller: Caller | None = getattr(request.state, CALLER_STATE, None)
    name = caller.name if caller is not None else None
    return forwarded(request.headers.items(), request.state.request_id, name)


def _job_reader(request: Request, tokens: Tokens | None) -> str | None:
    """Whose jobs the caller may read: its own name; None (anyone's) for an administrator
    or on a server that checks no tokens."""
    if tokens is None:
        return None
    caller: Caller | None = getattr(request.state, CALLER_STATE, None)
    if caller is None:  # BearerAuth lets no unnamed caller reach a job
        raise Unauthenticated("this server needs a token: send `authorization: Bearer <token>`")
    return None if caller.admin else caller.name


def _infer_reply(
    content: bytes, header_length: int | None, reply: dict[str, str], request_id: str
) -> Response:
    headers = {k: v for k, v in reply.items() if k.lower() not in _OWN_HEADERS}
    headers.pop(REQUEST_ID, None)
    headers.update(_id_header(request_id))
    if header_length is None:
        return Response(content, media_type="application/json", headers=headers)
    headers[HEADER_LENGTH] = str(header_length)
    return Response(content, media_type="application/octet-stream", headers=headers)


def _id_header(request_id: str) -> dict[str, str]:
    # HTTP headers carry Latin-1 text; an id that is not plain ASCII stays in the body,
    # and one over the limit (refused) is not echoed.
    ok = (
        len(request_id) <= MAX_REQUEST_ID_LENGTH
        and request_id.isascii()
        and request_id.isprintable()
    )
    return {REQUEST_ID: request_id} if ok else {}


def _metadata_json(meta: ModelDescription) -> dict[str, Any]:
    def tensors(specs: list[Any]) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in specs]

    return {
        "name": meta.name,
        "versions": meta.versions,
        "platform": meta.platform,
        "inputs": tensors(meta.inputs),
        "outputs": tensors(meta.outputs),
    }


def _object(body: bytes) -> dict[str, Any]:
    """An optional JSON object body (repository requests)."""
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InvalidInput("request body must be a JSON object")
    return parsed


def _status(ok: bool, problem: str) -> Response:
    # OIP health answers are the status code alone: 200 true, 4xx false.
    return Response(status_code=200) if ok else _json(error_body(problem), 400)


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json", headers=headers)


async def _on_streamdag_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StreamdagError)  # registered for StreamdagError only
    request_id = getattr(request.state, "request_id", None)
    headers = _id_header(request_id) if request_id else None
    return _json(error_body(exc), http_status(exc.code), headers)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    # Unknown routes and wrong methods get OIP error bodies too.
    assert isinstance(exc, StarletteHTTPException)
    return _json({"error": str(exc.detail)}, exc.status_code, exc.headers)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # A bug, not a bad request: answer in OIP form; Starlette re-raises it to be logged.
    return _json(error_body(f"internal error: {type(exc).__name__}: {exc}"), 500)
