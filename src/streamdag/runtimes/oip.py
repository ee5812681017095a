"""Runtime ``oip``: a model on a remote Open Inference Protocol (V2) server (Triton,
MLServer, KServe, another ``streamdag serve``).

``load()`` opens one pooled connection (a gRPC channel, or an httpx client for REST),
fetches the remote metadata and waits for the model to be ready; ``predict()`` sends each
micro-batch as one request over it; ``unload()`` closes it. "Unavailable" (gRPC
UNAVAILABLE, no connection, HTTP 503, not ready yet) is retried with exponential backoff,
``attempts`` times at most, within one deadline of ``timeout_ms`` (default 30 s). Input the
remote rejects (INVALID_ARGUMENT, 400) is ``InvalidInput``, which the engine does not retry;
an unknown remote model is ``ConfigError`` at load; the rest is ``ModelError`` with the
remote's message. ``GrpcClient`` and ``RestClient`` are the one-attempt clients underneath,
also used by ``streamdag infer``; they raise the error of the tree matching the status,
and present a bearer token and TLS files when given a ``ClientAuth``.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeVar, cast
from urllib.parse import quote

import grpc
import httpx
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]
from numpy.typing import NDArray
from pydantic import Field

from streamdag import protocol as oip
from streamdag.errors import (
    ConfigError,
    DeadlineExceeded,
    InvalidInput,
    ModelError,
    NotFound,
    ResourceExhausted,
    StreamdagError,
    Unavailable,
    error_for_code,
)
from streamdag.runtimes.base import Model, ModelMetadata, TensorSpec, check_inputs, check_outputs
from streamdag.runtimes.config import RuntimeSpec

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ClientAuth",
    "GrpcClient",
    "OipClient",
    "OipModel",
    "OipModelSpec",
    "RestClient",
    "open_client",
]

DEFAULT_TIMEOUT_S: Final = 30.0
# As large as what `streamdag serve` accepts by default; gRPC's own default is 4 MB.
_MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024

# Remote statuses -> codes of the error tree: the inverse of the front doors' tables
# (serving.rest.HTTP_STATUS, serving.grpc.GRPC_STATUS); any other status (500, INTERNAL:
# the model failed) is a model error. The one place an answer's status becomes an error.
_GRPC_CODES: Final = {
    grpc.StatusCode.INVALID_ARGUMENT: "invalid_argument",
    grpc.StatusCode.NOT_FOUND: "not_found",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "resource_exhausted",
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "deadline_exceeded",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    grpc.StatusCode.PERMISSION_DENIED: "permission_denied",
    grpc.StatusCode.DATA_LOSS: "data_loss",
}
_HTTP_CODES: Final = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    413: "resource_exhausted",
    503: "unavailable",
    504: "deadline_exceeded",
}

_T = TypeVar("_T")


class OipModelSpec(RuntimeSpec):
    """A model on a remote Open Inference Protocol server (Triton, MLServer, streamdag)."""

    runtime: Literal["oip"]
    protocol: Literal["grpc", "rest"] = "grpc"
    url: str = Field(
        min_length=1, description="gRPC host:port, or the REST base URL (http://host:port)."
    )
    model: str = Field(min_length=1, description="The model's name on the remote server.")
    version: str | None = None
    attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Tries per call while the server is unavailable (gRPC UNAVAILABLE, no "
        "connection, HTTP 503), all within timeout_ms (default 30 s).",
    )
    backoff_ms: float = Field(
        default=100.0, ge=0, le=60_000, description="Wait before the 2nd try; doubled after."
    )


class OipClient(Protocol):
    """One connection to an OIP server; each call is one attempt bounded by ``timeout`` (s)."""

    def ready(self, model: str, version: str, timeout: float) -> bool: ...
    def server_ready(self, timeout: float) -> bool: ...
    def server_live(self, timeout: float) -> bool: ...
    def metadata(self, model: str, version: str, timeout: float) -> ModelMetadata: ...
    def infer(self, request: oip.ModelInferRequest, timeout: float) -> oip.ModelInferResponse: ...
    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClientAuth:
    """How a client proves who it is and checks the server: a bearer ``token`` (sent as
    ``authorization: Bearer <token>``), the PEM ``cacert`` that signed the server's
    certificate, and a PEM client ``cert`` and unencrypted ``key`` for mutual TLS. TLS is
    on when ``cacert`` or ``cert`` is given."""

    token: str | None = None
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("a client certificate and its key go together (--cert, --key)")
        if self.token is not None and not _HEADER_VALUE.isdisjoint(self.token):
            raise ConfigError("the token holds spaces or line breaks; a header cannot carry it")

    @property
    def tls(self) -> bool:
        return self.cacert is not None or self.cert is not None

    def headers(self) -> dict[str, str]:
        return {} if self.token is None else {"authorization": f"Bearer {self.token}"}

    def ssl_context(self) -> ssl.SSLContext:
        """For REST: trusts ``cacert`` (else the system's CAs), presents ``cert``;
        ``ConfigError`` naming a file that cannot be used."""
        try:
            context = ssl.create_default_context(cafile=self.cacert)
        except OSError as exc:  # ssl.SSLError too
            raise ConfigError(f"CA file {self.cacert}: {_tls_problem(exc)}") from exc
        if self.cert is not None:
            try:
                context.load_cert_chain(self.cert, self.key, password=self._encrypted)
            except OSError as exc:
                raise ConfigError(
                    f"client certificate {self.cert} with key {self.key}: {_tls_problem(exc)}"
                ) from exc
        return context

    def _encrypted(self) -> bytes:
        # Called by ssl only for an encrypted key: never prompt on the terminal for it.
        raise ConfigError(f"key {self.key} is encrypted; give it unencrypted")

    def grpc_credentials(self) -> Any:
        """For gRPC: ``grpc.ChannelCredentials`` with the same files."""
        self.ssl_context()  # grpc would only fail at the first call, and vaguely
        read = _read_file
        return grpc.ssl_channel_credentials(
            root_certificates=read(self.cacert) if self.cacert else None,
            private_key=read(self.key) if self.key else None,
            certificate_chain=read(self.cert) if self.cert else None,
        )


_HEADER_VALUE = frozenset(" \t\r\n")


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _tls_problem(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):  # OpenSSL says only "PEM lib" of an unreadable file
        return exc.reason.lower().replace("_", " ") if exc.reason else "not readable as PEM"
    return exc.strerror or str(exc)


class GrpcClient:
    """OIP over gRPC on one channel, shared by all threads (grpc channels are thread-safe);
    over TLS, with a token, as ``auth`` says."""

    def __init__(self, target: str, auth: ClientAuth | None = None) -> None:
        self.target = target
        auth = auth or ClientAuth()
        self._metadata = tuple(auth.headers().items())
        channel = grpc.secure_channel if auth.tls else grpc.insecure_channel
        extra = (auth.grpc_credentials(),) if auth.tls else ()
        self._channel = channel(
            target,
            *extra,
            options=[
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                # gRPC waits 1 s (up to 120 s after an outage) before reconnecting to a server
                # that refused, failing calls meanwhile; that would defeat our own retries.
                ("grpc.initial_reconnect_backoff_ms", 50),
                ("grpc.min_reconnect_backoff_ms", 50),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ],
        )
        stub: Any = oip.inference_pb2_grpc.GRPCInferenceServiceStub  # generated, untyped
        self._stub: Any = stub(self._channel)

    def ready(self, model: str, version: str, timeout: float) -> bool:
        request = oip.inference_pb2.ModelReadyRequest(name=model, version=version)
        return bool(self._call(self._stub.ModelReady, request, timeout).ready)

    def server_ready(self, timeout: float) -> bool:
        request = oip.inference_pb2.ServerReadyRequest()
        return bool(self._call(self._stub.ServerReady, request, timeout).ready)

    def server_live(self, timeout: float) -> bool:
        request = oip.inference_pb2.ServerLiveRequest()
        return bool(self._call(self._stub.ServerLive, request, timeout).live)

    def metadata(self, model: str, version: str, timeout: float) -> ModelMetadata:
        request = oip.inference_pb2.ModelMetadataRequest(name=model, version=version)
        return _metadata(self._call(self._stub.ModelMetadata, request, timeout))

    def infer(self, request: oip.ModelInferRequest, timeout: float) -> oip.ModelInferResponse:
        return cast(oip.ModelInferResponse, self._call(self._stub.ModelInfer, request, timeout))

    def close(self) -> None:
        self._channel.close()

    def _call(self, rpc: Callable[..., Any], request: Any, timeout: float) -> Any:
        try:
            return rpc(request, timeout=timeout, metadata=self._metadata or None)
        except grpc.RpcError as exc:  # raised by sync calls as a grpc.Call
            code = exc.code()
            message = f"{self.target} answered {code.name}: {exc.details()}"
            raise error_for_code(_GRPC_CODES.get(code, ModelError.code), message) from exc


class RestClient:
    """OIP over HTTP JSON on one pooled httpx client (thread-safe); proxy variables are
    ignored, as streamdag reads no environment outside its settings. ``auth`` adds a token
    and the TLS files of an https URL."""

    def __init__(self, url: str, auth: ClientAuth | None = None) -> None:
        self.url = url.rstrip("/")
        auth = auth or ClientAuth()
        verify: ssl.SSLContext | bool = auth.ssl_context() if auth.tls else True
        self._http = httpx.Client(
            base_url=self.url, trust_env=False, verify=verify, headers=auth.headers()
        )

    def ready(self, model: str, version: str, timeout: float) -> bool:
        return self._health(_path(model, version, "/ready"), timeout)

    def server_ready(self, timeout: float) -> bool:
        return self._health("/v2/health/ready", timeout)

    def server_live(self, timeout: float) -> bool:
        return self._health("/v2/health/live", timeout)

    def get_json(self, path: str, timeout: float) -> tuple[int, bytes]:
        """GET ``path``; the status (a success) and the body."""
        reply = self._send("GET", path, timeout)
        return reply.status_code, reply.content

    def post_json(self, path: str, body: Mapping[str, Any], timeout: float) -> tuple[int, bytes]:
        """POST a JSON body to ``path``; the status (a success) and the body."""
        content = json.dumps(body, allow_nan=True, separators=(",", ":")).encode()
        reply = self._send("POST", path, timeout, content)
        return reply.status_code, reply.content

    def _health(self, path: str, timeout: float) -> bool:
        try:
            self._request("GET", path, timeout)
        except InvalidInput:  # OIP answers "not ready" with a 4xx other than 404
            return False
        return True

    def metadata(self, model: str, version: str, timeout: float) -> ModelMetadata:
        body = self._request("GET", _path(model, version, ""), timeout)
        try:  # the JSON form of the gRPC message: parse it as one
            message = oip.inference_pb2.ModelMetadataResponse()
            reply = json_format.Parse(body, message, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise ModelError(f"{self.url} sent model metadata that is not OIP: {exc}") from exc
        return _metadata(reply)

    def infer(self, request: oip.ModelInferRequest, timeout: float) -> oip.ModelInferResponse:
        body = oip.request_to_json(request)
        return oip.response_from_json(
            self.infer_json(request.model_name, request.model_version, body, timeout)
        )

    def infer_json(
        self, model: str, version: str, body: Mapping[str, Any], timeout: float
    ) -> bytes:
        """POST an OIP JSON request body; the response body as received."""
        # json.dumps, not httpx's json=, which refuses the NaN literals OIP JSON may hold.
        content = json.dumps(body, allow_nan=True, separators=(",", ":")).encode()
        return self._request("POST", _path(model, version, "/infer"), timeout, content)

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, timeout: float, content: bytes = b"") -> bytes:
        return self._send(method, path, timeout, content).content

    def _send(self, method: str, path: str, timeout: float, content: bytes = b"") -> httpx.Response:
        headers = {"content-type": "application/json"} if content else None
        try:
            reply = self._http.request(
                method, path, content=content or None, headers=headers, timeout=timeout
            )
        except httpx.TimeoutException as exc:
            raise DeadlineExceeded(f"{self.url}: no answer within {timeout:.3g} s") from exc
        except httpx.TransportError as exc:  # refused, reset, name not resolved
            raise Unavailable(f"cannot reach {self.url}: {exc}") from exc
        if reply.is_success:
            return reply
        code = _HTTP_CODES.get(reply.status_code, ModelError.code)
        message = f"{self.url} answered {reply.status_code}: {oip.error_from_json(reply.content)}"
        raise error_for_code(code, message)


def open_client(protocol: str, url: str, auth: ClientAuth | None = None) -> OipClient:
    """A client for ``url``: ``host:port`` (``grpc://`` optional) or ``http(s)://host:port``
    (``http://``, or ``https://`` with TLS files in ``auth``, optional); ``ConfigError`` for
    an address that cannot be one, or TLS files with an ``http://`` URL."""
    auth = auth or ClientAuth()
    if protocol == "grpc":
        target = url.removeprefix("grpc://")
        if not target or "://" in target or "/" in target:
            raise ConfigError(f"url {url!r}: gRPC takes host:port (e.g. localhost:8001)")
        return GrpcClient(target, auth)
    full = url if "://" in url else f"{'https' if auth.tls else 'http'}://{url}"
    try:
        parsed = httpx.URL(full)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"url {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"url {url!r}: REST takes http(s)://host:port (e.g. localhost:8000)")
    if auth.tls and parsed.scheme != "https":
        raise ConfigError(f"url {url!r}: TLS files go with an https:// URL")
    return RestClient(full, auth)


def _metadata(reply: Any) -> ModelMetadata:
    """From a gRPC ``ModelMetadataResponse`` or a parsed REST body: the fields are the same."""

    def specs(tensors: Any) -> list[TensorSpec]:
        return [TensorSpec(t.name, t.datatype, list(t.shape)) for t in tensors]

    return ModelMetadata(reply.name, reply.platform, specs(reply.inputs), specs(reply.outputs))


def _path(model: str, version: str, suffix: str) -> str:
    name = quote(model, safe="")
    versioned = f"{name}/versions/{quote(version, safe='')}" if version else name
    return f"/v2/models/{versioned}{suffix}"


class OipModel(Model):
    """Runs ``spec.model`` of a remote OIP server; ``metadata()`` is the remote model's (shapes
    ``-1`` where variable) under this model's name. gRPC carries raw tensors, REST JSON."""

    spec_class = OipModelSpec

    def __init__(self, name: str, spec: OipModelSpec) -> None:
        self.name = name
        self.spec = spec
        self.timeout_s = spec.timeout_ms / 1000 if spec.timeout_ms else DEFAULT_TIMEOUT_S
        self._client: OipClient | None = None
        self._metadata: ModelMetadata | None = None

    def load(self) -> None:
        try:
            client = open_client(self.spec.protocol, self.spec.url)
        except ConfigError as exc:
            raise ConfigError(f"model {self.name}: {exc}") from exc
        model, version = self.spec.model, self.spec.version or ""

        def fetch(timeout: float) -> ModelMetadata:
            remote = client.metadata(model, version, timeout)  # first: NotFound says most
            if not client.ready(model, version, timeout):
                # Worth waiting for, as for a server that is still starting.
                raise Unavailable(f"remote model {model!r} at {self.spec.url} is not ready")
            return remote

        try:
            remote = self._retrying(fetch)
        except BaseException as exc:
            client.close()
            if isinstance(exc, NotFound | InvalidInput | ConfigError):
                # ConfigError here is metadata with a datatype streamdag cannot carry.
                raise ConfigError(
                    f"model {self.name}: remote model {model!r} cannot be used: {exc}"
                ) from exc
            if isinstance(exc, StreamdagError):
                raise ModelError(f"model {self.name}: {exc}") from exc
            raise
        self._metadata = dataclasses.replace(remote, name=self.name)
        self._client = client

    def predict(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        client = self._client
        if client is None:
            raise ModelError(f"model {self.name} is not loaded; call load() first")
        # The remote checks against its own declaration; here only the batch's structure is
        # checked, so a remote that declares shapes loosely is not second-guessed.
        unchecked = ModelMetadata(self.name, "oip", inputs=[], outputs=[])
        rows = check_inputs(unchecked, inputs)
        request = oip.encode_request(
            self.spec.model, inputs, model_version=self.spec.version or "", raw=True
        )
        try:
            response = self._retrying(lambda timeout: client.infer(request, timeout))
        except (InvalidInput, ResourceExhausted) as exc:
            # Too large fails the same way again: the input's fault, not to be retried.
            raise InvalidInput(f"model {self.name}: {exc}") from exc
        except StreamdagError as exc:
            raise ModelError(f"model {self.name}: {exc}") from exc
        try:
            outputs = oip.decode_response(response)
        except InvalidInput as exc:  # the remote's answer is broken, not the caller's input
            raise ModelError(f"model {self.name}: undecodable remote response: {exc}") from exc
        check_outputs(unchecked, outputs, rows)
        return outputs

    def unload(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self._metadata = None

    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            raise ModelError(f"model {self.name} is not loaded; call load() first")
        return self._metadata

    def _retrying(self, call: Callable[[float], _T]) -> _T:
        """``call(seconds_left)`` until it does not raise ``Unavailable``, at most
        ``spec.attempts`` times, waiting ``backoff_ms`` doubled each time, within one deadline."""
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return call(max(deadline - time.monotonic(), 0.001))
            except Unavailable as exc:
                wait = self.spec.backoff_ms / 1000 * 2 ** (attempt - 1)
                if attempt >= self.spec.attempts or time.monotonic() + wait >= deadline:
                    raise Unavailable(f"{exc} (gave up after {attempt} attempts)") from exc
                time.sleep(wait)
