"""``streamdag serve PIPELINE.yaml...``: OIP V2 over REST and gRPC until SIGTERM."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from streamdag.cli.options import (
    freeze_startup_objects,
    kafka_options,
    payload_store_option,
    resolve_kafka,
)
from streamdag.errors import KafkaOperationError
from streamdag.observability.tracing import configure_tracing, shutdown_tracing
from streamdag.payloads import store_from_settings
from streamdag.pipeline import compile_plan, load_spec
from streamdag.serving import build_gateway, event_loop_factory
from streamdag.serving import serve as run_server
from streamdag.serving.tls import TlsFiles

__all__ = ["serve"]

_port = click.IntRange(0, 65535)
_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command()
@click.argument(
    "spec_files",
    nargs=-1,
    required=True,
    metavar="PIPELINE.yaml...",
    type=click.Path(path_type=Path),
)
@click.option("--http-port", type=_port, default=8080, show_default=True, help="REST port.")
@click.option("--grpc-port", type=_port, default=8081, show_default=True, help="gRPC port.")
@click.option(
    "--host",
    default=None,
    metavar="ADDR",
    help="Address to bind both ports to [env STREAMDAG_SERVE_HOST; default 127.0.0.1]",
)
@click.option(
    "--models-only",
    is_flag=True,
    help="Serve the specs' models (/v2/models/<m>) but not their pipelines: no gateway, "
    "so no Kafka is needed.",
)
@click.option(
    "--allow-repository-changes",
    is_flag=True,
    help="Let callers load and unload models through the REST repository extension "
    "(POST /v2/repository/models/<m>/load, .../unload), which anyone who reaches the "
    "HTTP port could use; without it they get 403 "
    "[env STREAMDAG_SERVE_ALLOW_REPOSITORY_CHANGES; default off].",
)
@click.option(
    "--auth-tokens",
    type=_file,
    default=None,
    metavar="FILE",
    help="Require a bearer token (REST `Authorization: Bearer <token>`, gRPC `authorization` "
    "metadata) from every caller but the health checks; FILE holds one `name: token` per "
    "line, and the name goes with the caller's requests (header streamdag-caller) "
    "[env STREAMDAG_SERVE_AUTH_TOKENS; default: accept anyone].",
)
@click.option(
    "--open-metrics",
    is_flag=True,
    help="With --auth-tokens: serve /metrics without a token [env STREAMDAG_SERVE_OPEN_METRICS].",
)
@click.option(
    "--open-docs",
    is_flag=True,
    help="With --auth-tokens: serve the OpenAPI document (/openapi.json) and the API docs "
    "page (/docs) without a token [env STREAMDAG_SERVE_OPEN_DOCS].",
)
@click.option(
    "--open-ui",
    is_flag=True,
    help="With --auth-tokens: serve the web view (/ui) without a token; else the browser "
    "must send the Authorization header (a reverse proxy can add it) "
    "[env STREAMDAG_SERVE_OPEN_UI].",
)
@click.option(
    "--ui-show-values",
    is_flag=True,
    help="Let the web view show tensors' values to a viewer who turns on its 'show values' "
    "switch; otherwise it shows datatype, shape and digest only, since values may be "
    "patient data [env STREAMDAG_SERVE_UI_SHOW_VALUES].",
)
@click.option(
    "--tls-cert",
    type=_file,
    default=None,
    metavar="FILE",
    help="Serve REST over HTTPS and gRPC over TLS with this PEM certificate (chain); "
    "needs --tls-key [env STREAMDAG_SERVE_TLS_CERT].",
)
@click.option(
    "--tls-key",
    type=_file,
    default=None,
    metavar="FILE",
    help="The unencrypted PEM key of --tls-cert [env STREAMDAG_SERVE_TLS_KEY].",
)
@click.option(
    "--tls-client-ca",
    type=_file,
    default=None,
    metavar="FILE",
    help="Require a client certificate signed by a CA of this PEM file on both ports "
    "(mutual TLS) [env STREAMDAG_SERVE_TLS_CLIENT_CA].",
)
@kafka_options
@payload_store_option
def serve(
    spec_files: tuple[Path, ...],
    http_port: int,
    grpc_port: int,
    host: str | None,
    models_only: bool,
    allow_repository_changes: bool,
    auth_tokens: Path | None,
    open_metrics: bool,
    open_docs: bool,
    open_ui: bool,
    ui_show_values: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    bootstrap: str | None,
    kafka_config: Path | None,
    payload_store: str | None,
) -> None:
    """Serve the pipelines' models (and the pipelines) over OIP V2 until SIGTERM or Ctrl-C.

    With --models-only, only the models, without Kafka. Without --auth-tokens anyone who
    reaches the ports may call them (see "Securing the front doors" in
    docs/deployment.md)."""
    tls = TlsFiles.from_settings(cert=tls_cert, key=tls_key, client_ca=tls_client_ca)
    plans = [compile_plan(load_spec(path)) for path in spec_files]
    kafka = resolve_kafka(bootstrap, kafka_config)
    # One store for the gateway, which writes to it, and the web view, which reads it.
    payloads = store_from_settings(payload_store)
    # The pipelines need Kafka (the gateway's request-reply); the models alone do not.
    gateway = None if models_only else build_gateway(plans, kafka, payloads=payloads)
    configure_tracing("streamdag-serve")
    freeze_startup_objects()
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(
                run_server(
                    plans,
                    gateway=gateway,
                    host=host,
                    http_port=http_port,
                    grpc_port=grpc_port,
                    kafka=kafka,
                    # Without the flag, the setting decides.
                    allow_repository_changes=allow_repository_changes or None,
                    auth_tokens=auth_tokens,
                    open_metrics=open_metrics or None,
                    open_docs=open_docs or None,
                    open_ui=open_ui or None,
                    tls=tls,
                    payloads=payloads,
                    ui_show_values=ui_show_values or None,
                )
            )
    except KafkaOperationError as exc:
        if models_only:
            raise
        raise KafkaOperationError(
            f"{exc.message}; `streamdag serve --models-only` serves the specs' models without Kafka"
        ) from exc
    finally:
        shutdown_tracing()
