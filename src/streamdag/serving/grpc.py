"""The gRPC front door: ``inference.GRPCInferenceService`` (grpc.aio) over the DataPlane.

The service is Triton's, so ``tritonclient.grpc`` and other OIP clients work unchanged.
``ModelInfer`` with ``model_name`` set to a pipeline's name runs the pipeline. Errors end
the call with the status from ``GRPC_STATUS`` and the error's message as details.
With tokens, ``BearerAuthInterceptor`` ends a call without valid ``authorization:
Bearer <token>`` metadata with UNAUTHENTICATED before its message is even parsed, but
``ServerLive`` and ``ServerReady``; a pipeline request carries the token's name as
``streamdag-caller``. ``ModelReady`` of a model or pipeline that is not ready tells why in
the trailing metadata ``streamdag-not-ready`` (the REST door's error message).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Final, NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError as ProtobufDecodeError  # type: ignore[import-untyped, unused-ignore]

from streamdag.errors import (
    DecodeError,
    RepositoryChangesRefused,
    StreamdagError,
    Unauthenticated,
)
from streamdag.kafka.headers import REQUEST_ID, forwarded
from streamdag.protocol import ModelInferRequest, ModelInferResponse, inference_pb2
from streamdag.runtimes import TensorSpec
from streamdag.serving.auth import Tokens
from streamdag.serving.checks import MAX_REQUEST_ID_LENGTH
from streamdag.serving.dataplane import DataPlane

__all__ = [
    "GRPC_STATUS",
    "NOT_READY_TRAILER",
    "BearerAuthInterceptor",
    "InferenceServicer",
    "add_servicer",
    "grpc_status",
]

NOT_READY_TRAILER: Final = "streamdag-not-ready"
"""The trailing metadata key of ``ModelReady`` that says why a model or pipeline is not
ready."""

GRPC_STATUS: Final[dict[str, grpc.StatusCode]] = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
    "deadline_exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "data_loss": grpc.StatusCode.DATA_LOSS,
}
"""The one mapping from ``StreamdagError.code`` to gRPC status; other codes are INTERNAL."""

# gRPC metadata keys are lowercase tokens; "grpc-" keys belong to the transport.
_KEY = re.compile(r"^(?!grpc-)[0-9a-z_.-]+$")
_log = logging.getLogger("streamdag.serving")
_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
_T = TypeVar("_T")
# Open to probes, which carry no token.
_HEALTH = frozenset(f"/{_SERVICE.full_name}/{rpc}" for rpc in ("ServerLive", "ServerReady"))
# The name of the caller's token, set by the interceptor for the handler of the same call
# (grpc.aio runs a call's interceptors and handler in one contextvars.Context).
_caller: ContextVar[str | None] = ContextVar("streamdag_caller", default=None)


def grpc_status(code: str) -> grpc.StatusCode:
    return GRPC_STATUS.get(code, grpc.StatusCode.INTERNAL)


class InferenceServicer:
    """The RPCs of ``inference.GRPCInferenceService``; each converts and delegates.
    Repository load and unload answer PERMISSION_DENIED unless
    ``allow_repository_changes``."""

    def __init__(self, dataplane: DataPlane, *, allow_repository_changes: bool = False) -> None:
        self._dp = dataplane
        self._allow_changes = allow_repository_changes

    async def ServerLive(self, request: Any, context: Any) -> inference_pb2.ServerLiveResponse:
        return inference_pb2.ServerLiveResponse(live=self._dp.live())

    async def ServerReady(self, request: Any, context: Any) -> inference_pb2.ServerReadyResponse:
        return inference_pb2.ServerReadyResponse(ready=self._dp.ready())

    async def ModelReady(
        self, request: inference_pb2.ModelReadyRequest, context: Any
    ) -> inference_pb2.ModelReadyResponse:
        ready, reason = await _call(
            context, lambda: self._dp.model_readiness(request.name, request.version)
        )
        if reason:  # the response has no field for it
            # Metadata values of text keys are printable ASCII.
            text = reason.encode("ascii", "backslashreplace").decode()
            context.set_trailing_metadata(((NOT_READY_TRAILER, text),))
        return inference_pb2.ModelReadyResponse(ready=ready)

    async def ServerMetadata(
        self, request: Any, context: Any
    ) -> inference_pb2.ServerMetadataResponse:
        meta = self._dp.server_metadata()
        return inference_pb2.ServerMetadataResponse(
            name=meta.name, version=meta.version, extensions=meta.extensions
        )

    async def ModelMetadata(
        self, request: inference_pb2.ModelMetadataRequest, context: Any
    ) -> inference_pb2.ModelMetadataResponse:
        meta = await _call(context, lambda: self._dp.model_metadata(request.name, request.version))
        return inference_pb2.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions,
            platform=meta.platform,
            inputs=[_tensor(t) for t in meta.inputs],
            outputs=[_tensor(t) for t in meta.outputs],
        )

    async def ModelInfer(self, request: ModelInferRequest, context: Any) -> ModelInferResponse:
        metadata = _metadata(context)
        # The request id is the message's id, else the x-request-id metadata, else new.
        request.id = request.id or metadata.get(REQUEST_ID) or uuid.uuid4().hex
        # Metadata values are ASCII; an id that is not stays in the message only, and one
        # over the limit (refused) is not echoed: the trailer would exceed the client's cap.
        echo = len(request.id) <= MAX_REQUEST_ID_LENGTH and _sendable(REQUEST_ID, request.id)
        trailing = ((REQUEST_ID, request.id),) if echo else ()
        try:
            # Only the interceptor names the caller, never the caller's own metadata.
            headers = forwarded(metadata.items(), request.id, _caller.get())
            response, reply = await self._dp.infer_with_headers(
                request, timeout=context.time_remaining(), headers=headers
            )
        except Exception as exc:
            await _abort(context, exc, trailing)
        context.set_trailing_metadata(
            (*((k, v) for k, v in reply.items() if k != REQUEST_ID and _sendable(k, v)), *trailing)
        )
        return response

    async def RepositoryIndex(
        self, request: inference_pb2.RepositoryIndexRequest, context: Any
    ) -> inference_pb2.RepositoryIndexResponse:
        entries = self._dp.repository_index(ready_only=request.ready)
        index = inference_pb2.RepositoryIndexResponse.ModelIndex
        return inference_pb2.RepositoryIndexResponse(
            models=[
                index(name=e.name, version=e.version, state=e.state, reason=e.reason)
                for e in entries
            ]
        )

    async def RepositoryModelLoad(
        self, request: inference_pb2.RepositoryModelLoadRequest, context: Any
    ) -> inference_pb2.RepositoryModelLoadResponse:
        await _call_async(context, lambda: self._change("load", request.model_name))
        return inference_pb2.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: inference_pb2.RepositoryModelUnloadRequest, context: Any
    ) -> inference_pb2.RepositoryModelUnloadResponse:
        await _call_async(context, lambda: self._change("unload", request.model_name))
        return inference_pb2.RepositoryModelUnloadResponse()

    async def _change(self, action: str, model: str) -> None:
        if not self._allow_changes:
            raise RepositoryChangesRefused(action, model)
        await (self._dp.load(model) if action == "load" else self._dp.unload(model))


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Ends every call but ``ServerLive`` and ``ServerReady`` with UNAUTHENTICATED unless
    its ``authorization`` metadata is ``Bearer <token>`` with a token of ``tokens``; the
    token's name is left for the handler (``streamdag-caller``)."""

    def __init__(self, tokens: Tokens) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if details.method in _HEALTH:
            return await continuation(details)
        metadata = details.invocation_metadata or ()
        authorization = next(
            (v for k, v in metadata if k == "authorization" and isinstance(v, str)), None
        )
        try:
            _caller.set(self._tokens.caller(authorization))
        except Unauthenticated as exc:
            return _refusal(exc)
        return await continuation(details)


def _refusal(exc: Unauthenticated) -> grpc.RpcMethodHandler:
    # No deserializer: the message of a caller without a token is never parsed.
    async def refuse(request: bytes, context: Any) -> NoReturn:
        await _abort(context, exc)

    return grpc.unary_unary_rpc_method_handler(refuse)


def add_servicer(servicer: InferenceServicer, server: Any) -> None:
    """Register ``servicer`` on a ``grpc.aio.Server``.

    As the generated ``add_GRPCInferenceServiceServicer_to_server`` does, except that a
    body that does not parse as the method's message ends the call with INVALID_ARGUMENT
    (grpc would answer UNKNOWN).
    """
    handlers = {}
    for method in _SERVICE.methods:
        request_type = getattr(inference_pb2, method.input_type.name)
        response_type = getattr(inference_pb2, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _refusing_undecodable(getattr(servicer, method.name)),
            request_deserializer=_parser(request_type),
            response_serializer=response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(_SERVICE.full_name, handlers),)
    )
    server.add_registered_method_handlers(_SERVICE.full_name, handlers)


def _parser(message_type: Any) -> Callable[[bytes], Any]:
    """The request deserializer: the parsed message, or the ``DecodeError`` to answer with.

    grpc turns an exception raised here into UNKNOWN, before any handler runs; returned,
    the error reaches ``_refusing_undecodable``, which answers INVALID_ARGUMENT.
    """
    name = message_type.DESCRIPTOR.full_name

    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except ProtobufDecodeError as exc:
            return DecodeError(f"request body is not an {name}: {exc}")

    return parse


def _refusing_undecodable(
    handler: Callable[[Any, Any], Awaitable[_T]],
) -> Callable[[Any, Any], Awaitable[_T]]:
    async def handle(request: Any, context: Any) -> _T:
        if isinstance(request, DecodeError):
            await _abort(context, request)
        return await handler(request, context)

    return handle


async def _call(context: Any, call: Callable[[], _T]) -> _T:
    try:
        return call()
    except Exception as exc:
        await _abort(context, exc)


async def _call_async(context: Any, call: Callable[[], Awaitable[_T]]) -> _T:
    try:
        return await call()
    except Exception as exc:
        await _abort(context, exc)


async def _abort(
    context: Any, exc: Exception, trailing: tuple[tuple[str, str], ...] = ()
) -> NoReturn:
    """End the call with the status of ``exc``; ``context.abort`` raises to do so."""
    if isinstance(exc, StreamdagError):
        code, message = grpc_status(exc.code), str(exc)
    else:
        _log.error("unexpected error in a gRPC call", exc_info=exc)
        code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"
    await context.abort(code, message, trailing_metadata=trailing)
    raise AssertionError("unreachable: context.abort raises")


def _metadata(context: Any) -> dict[str, str]:
    # Binary ("-bin") entries carry bytes; no header this door reads is binary.
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def _sendable(key: str, value: str) -> bool:
    return bool(_KEY.match(key)) and value.isascii() and value.isprintable()


def _tensor(spec: TensorSpec) -> inference_pb2.ModelMetadataResponse.TensorMetadata:
    return inference_pb2.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype, shape=spec.shape
    )
