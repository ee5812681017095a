"""``streamdag serve PIPELINE.yaml...``: OIP V2 over REST and gRPC until SIGTERM."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from streamdag.cli.options import kafka_options, resolve_kafka
from streamdag.observability.tracing import configure_tracing, shutdown_tracing
from streamdag.pipeline import load_spec
from streamdag.serving import build_gateway
from streamdag.serving import serve as run_server

__all__ = ["serve"]

_port = click.IntRange(0, 65535)


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
    "--allow-repository-changes",
    is_flag=True,
    help="Let callers load and unload models through the REST repository extension "
    "(POST /v2/repository/models/<m>/load, .../unload), which anyone who reaches the "
    "HTTP port could use; without it they get 403 "
    "[env STREAMDAG_SERVE_ALLOW_REPOSITORY_CHANGES; default off].",
)
@kafka_options
def serve(
    spec_files: tuple[Path, ...],
    http_port: int,
    grpc_port: int,
    host: str | None,
    allow_repository_changes: bool,
    bootstrap: str | None,
    kafka_config: Path | None,
) -> None:
    """Serve the pipelines' models (and the pipelines) over OIP V2 until SIGTERM or Ctrl-C."""
    specs = [load_spec(path) for path in spec_files]
    kafka = resolve_kafka(bootstrap, kafka_config)
    gateway = build_gateway(specs, kafka)
    configure_tracing("streamdag-serve")
    try:
        asyncio.run(
            run_server(
                specs,
                gateway=gateway,
                host=host,
                http_port=http_port,
                grpc_port=grpc_port,
                kafka=kafka,
                # Without the flag, the setting decides.
                allow_repository_changes=allow_repository_changes or None,
            )
        )
    finally:
        shutdown_tracing()
