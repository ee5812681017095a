"""The composition root of ``streamdag serve``: one DataPlane, two front doors, one loop.

The REST door (FastAPI on uvicorn) and the gRPC door (grpc.aio) share the asyncio loop
and the ``DataPlane`` built here. Both doors check the same bearer tokens (``auth``) and
serve the same certificate (``tls``); token and TLS files are read when the ``Server`` is
built, so a bad one stops it before any port opens. Start order: bind both ports (so a
port in use fails at once), start serving (liveness answers while models load), then
start the DataPlane (gateway, model loading), after which readiness turns true. Stop
order: stop accepting, let requests in flight finish within the grace period, then stop
the DataPlane (drain the batchers, unload models, stop the gateway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import uvicorn

from streamdag.errors import ConfigError
from streamdag.kafka import KafkaConnection
from streamdag.payloads import PayloadStore
from streamdag.pipeline import PipelinePlan
from streamdag.serving.auth import Tokens
from streamdag.serving.dataplane import DataPlane
from streamdag.serving.gateway import KafkaGateway
from streamdag.serving.gateway_api import PipelineGateway
from streamdag.serving.grpc import BearerAuthInterceptor, InferenceServicer, add_servicer
from streamdag.serving.http_limits import limited_http
from streamdag.serving.rest import create_app
from streamdag.serving.tls import TlsFiles
from streamdag.settings import get_settings

__all__ = ["Server", "build_gateway", "event_loop_factory", "serve"]

_log = logging.getLogger("streamdag.serving")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the doors' event loop: uvloop's where it is installed (a dependency
    on Linux and macOS), whose scheduling runs in C, as in uvicorn's and MLServer's
    standard set-ups; None (asyncio's own) elsewhere. grpc.aio runs on either."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def build_gateway(
    plans: Sequence[PipelinePlan],
    kafka: KafkaConnection | str,
    *,
    payloads: PayloadStore | None = None,
) -> PipelineGateway | None:
    """The gateway that serves the pipelines of ``plans`` over the Kafka ``kafka`` reaches
    (request-reply and jobs), with requests and replies too large for a Kafka record in
    ``payloads``; None when there is no pipeline."""
    if not plans:
        return None
    return KafkaGateway(plans, kafka, payloads=payloads)


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The composition root owns SIGTERM/SIGINT and stops both doors together.
        yield


class Server:
    """Serves ``dataplane`` over REST and gRPC; ``async with Server(...)`` starts and stops it.

    Port 0 picks a free port; ``http_port`` and ``grpc_port`` tell the bound ones.
    ``auth_tokens`` (a token file or ``Tokens``) makes both doors require a bearer token,
    but for the health routes, and ``/metrics``, the API docs (``/openapi.json``,
    ``/docs``) and ``/ui`` when ``open_metrics``, ``open_docs`` and ``open_ui``; ``tls``
    serves both over TLS; ``ui_show_values`` lets the web view show tensors' values when
    a viewer asks. Left None, each comes from the
    ``STREAMDAG_SERVE_*`` settings. The web view reads values kept in ``payloads``, the
    payload store of the gateway. A REST caller sends a request's headers within
    ``header_timeout_s`` and ``max_header_bytes`` (``http_limits``).
    """

    def __init__(
        self,
        dataplane: DataPlane,
        *,
        host: str | None = None,
        http_port: int = 8080,
        grpc_port: int = 8081,
        max_body_bytes: int | None = None,
        shutdown_grace_s: float | None = None,
        kafka: KafkaConnection | str | None = None,
        allow_repository_changes: bool | None = None,
        auth_tokens: Tokens | Path | None = None,
        open_metrics: bool | None = None,
        open_docs: bool | None = None,
        open_ui: bool | None = None,
        tls: TlsFiles | None = None,
        payloads: PayloadStore | None = None,
        ui_show_values: bool | None = None,
        header_timeout_s: float | None = None,
        max_header_bytes: int | None = None,
    ) -> None:
        settings = get_settings()
        self.payloads = payloads
        self._header_timeout_s = header_timeout_s or settings.serve_header_timeout_s
        self._max_header_bytes = max_header_bytes or settings.serve_max_header_bytes
        tokens = settings.serve_auth_tokens if auth_tokens is None else auth_tokens
        self.tokens = Tokens.from_file(tokens) if isinstance(tokens, Path) else tokens
        self.open_metrics = settings.serve_open_metrics if open_metrics is None else open_metrics
        self.open_docs = settings.serve_open_docs if open_docs is None else open_docs
        self.open_ui = settings.serve_open_ui if open_ui is None else open_ui
        self.ui_show_values = (
            settings.serve_ui_show_values if ui_show_values is None else ui_show_values
        )
        self.tls = TlsFiles.from_settings() if tls is None else tls
        # Read now: a bad file is reported before any port opens.
        self._ssl = self.tls.ssl_context() if self.tls else None
        self._grpc_credentials = self.tls.grpc_credentials() if self.tls else None
        self.dataplane = dataplane
        self.kafka = kafka
        self.allow_repository_changes = (
            settings.serve_allow_repository_changes
            if allow_repository_changes is None
            else allow_repository_changes
        )
        self.host = host or settings.serve_host
        self.http_port = http_port
        self.grpc_port = grpc_port
        self._limit = max_body_bytes or settings.serve_max_body_bytes
        self._grace = (
            settings.serve_shutdown_grace_s if shutdown_grace_s is None else shutdown_grace_s
        )
        self._http: _Uvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._grpc: Any = None

    async def start(self) -> None:
        """Listen on both ports, then load the models; on any failure nothing keeps running."""
        try:
            await self._start_grpc()
            await self._start_http()
            await self.dataplane.start()
        except BaseException:
            await self.stop()
            raise
        _log.info(
            "serving %d models and %d pipelines: REST %s://%s:%d, gRPC %s:%d%s",
            len(self.dataplane.models()),
            len(self.dataplane.pipelines()),
            "https" if self.tls else "http",
            self.host,
            self.http_port,
            self.host,
            self.grpc_port,
            _security(self.tls, self.tokens),
        )
        if self.tokens is None:
            _log.warning(
                "no --auth-tokens: anyone who reaches these ports can call every model "
                "and pipeline and read /metrics and /ui"
            )

    async def stop(self) -> None:
        """Stop accepting, finish requests in flight (up to the grace period), unload."""
        await asyncio.gather(self._stop_http(), self._stop_grpc())
        await self.dataplane.stop()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _start_grpc(self) -> None:
        interceptors = [] if self.tokens is None else [BearerAuthInterceptor(self.tokens)]
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", self._limit),
                ("grpc.max_send_message_length", self._limit),
                # gRPC sets SO_REUSEPORT by default, so a second server would share a
                # port in use instead of failing.
                ("grpc.so_reuseport", 0),
            ],
        )
        add_servicer(
            InferenceServicer(
                self.dataplane, allow_repository_changes=self.allow_repository_changes
            ),
            server,
        )
        address = (
            f"[{self.host}]:{self.grpc_port}"
            if ":" in self.host
            else f"{self.host}:{self.grpc_port}"
        )
        try:
            if self._grpc_credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self._grpc_credentials)
        except RuntimeError as exc:  # grpc raises RuntimeError("Failed to bind ...")
            raise _cannot_listen("gRPC", address, "--grpc-port", str(exc)) from exc
        if not port:
            raise _cannot_listen("gRPC", address, "--grpc-port", "bind failed")
        self.grpc_port = port
        await server.start()
        self._grpc = server

    async def _start_http(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
        # without it each reply's body waits for the client's delayed ACK (~40 ms).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.http_port))
        except OSError as exc:
            sock.close()
            where = f"{self.host}:{self.http_port}"
            raise _cannot_listen("HTTP", where, "--http-port", exc.strerror or str(exc)) from exc
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(
                self.dataplane,
                max_body_bytes=self._limit,
                kafka=self.kafka,
                allow_repository_changes=self.allow_repository_changes,
                tokens=self.tokens,
                open_metrics=self.open_metrics,
                open_docs=self.open_docs,
                open_ui=self.open_ui,
                payloads=self.payloads,
                ui_show_values=self.ui_show_values,
            ),
            lifespan="off",
            log_config=None,  # keep streamdag's logging set-up
            access_log=False,
            timeout_graceful_shutdown=math.ceil(self._grace),
            http=limited_http(self._header_timeout_s, self._max_header_bytes),
            ssl_context_factory=None if self._ssl is None else _given(self._ssl),
        )
        self._http = _Uvicorn(config)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._http_task.done():
                self._http_task.result()  # raises why uvicorn gave up
                raise ConfigError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)

    async def _stop_http(self) -> None:
        if self._http is None or self._http_task is None:
            return
        self._http.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._http_task
        self._http = self._http_task = None

    async def _stop_grpc(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(self._grace)
            self._grpc = None


async def serve(
    plans: Sequence[PipelinePlan],
    *,
    gateway: PipelineGateway | None = None,
    host: str | None = None,
    http_port: int = 8080,
    grpc_port: int = 8081,
    kafka: KafkaConnection | str | None = None,
    allow_repository_changes: bool | None = None,
    auth_tokens: Tokens | Path | None = None,
    open_metrics: bool | None = None,
    open_docs: bool | None = None,
    open_ui: bool | None = None,
    tls: TlsFiles | None = None,
    payloads: PayloadStore | None = None,
    ui_show_values: bool | None = None,
) -> None:
    """Serve the models of ``plans``' specs (and the gateway's pipelines) until SIGTERM or SIGINT;
    the web view reads Kafka through ``kafka``; REST repository load and unload need
    ``allow_repository_changes`` (default: ``STREAMDAG_SERVE_ALLOW_REPOSITORY_CHANGES``).
    Tokens, TLS and the payload store the web view reads: as ``Server`` takes them."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Signal handlers can only be set from the main thread; elsewhere the caller cancels.
    main = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGTERM, signal.SIGINT) if main else ()
    for sig in signals:
        loop.add_signal_handler(sig, stopping.set)
    try:
        dataplane = DataPlane(plans, gateway=gateway)
        server = Server(
            dataplane,
            host=host,
            http_port=http_port,
            grpc_port=grpc_port,
            kafka=kafka,
            allow_repository_changes=allow_repository_changes,
            auth_tokens=auth_tokens,
            open_metrics=open_metrics,
            open_docs=open_docs,
            open_ui=open_ui,
            tls=tls,
            payloads=payloads,
            ui_show_values=ui_show_values,
        )
        async with server:
            await stopping.wait()
            _log.info("stopping: finishing the requests in flight")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _given(context: ssl.SSLContext) -> Any:
    """A uvicorn ``ssl_context_factory`` that answers with the context read at start."""
    return lambda config, default: context


def _security(tls: TlsFiles | None, tokens: Tokens | None) -> str:
    parts = []
    if tls is not None:
        parts.append("TLS with client certificates" if tls.mutual else "TLS")
    if tokens is not None:
        parts.append(f"{len(tokens.names())} bearer tokens")
    return f" ({', '.join(parts)})" if parts else ""


def _cannot_listen(door: str, address: str, option: str, why: str) -> ConfigError:
    return ConfigError(f"cannot listen for {door} on {address}: {why}; pick another {option}")
