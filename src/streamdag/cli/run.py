"""``streamdag run PIPELINE.yaml``: the pipeline's workers, in the foreground, until SIGTERM."""

from __future__ import annotations

from pathlib import Path

import click

from streamdag.cli.options import kafka_options, resolve_kafka
from streamdag.engine import PipelineRunner, handle_signals
from streamdag.observability.metrics import serve_metrics
from streamdag.observability.tracing import configure_tracing, shutdown_tracing
from streamdag.pipeline import load_spec

__all__ = ["run"]


@click.command()
@click.argument("spec_file", metavar="PIPELINE.yaml", type=click.Path(path_type=Path))
@click.option("--steps", default=None, metavar="A,B", help="Run only these steps.")
@kafka_options
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.",
)
@click.option(
    "--instance-id",
    default=None,
    metavar="ID",
    help="A stable id for this process (static group membership; a restart "
    "fences its predecessor's transactions at once).",
)
def run(
    spec_file: Path,
    steps: str | None,
    bootstrap: str | None,
    kafka_config: Path | None,
    metrics_port: int | None,
    instance_id: str | None,
) -> None:
    """Run the workers of all (or the named) steps until SIGTERM or Ctrl-C."""
    spec = load_spec(spec_file)
    chosen = [s.strip() for s in steps.split(",") if s.strip()] if steps else None
    runner = PipelineRunner(
        spec, resolve_kafka(bootstrap, kafka_config), steps=chosen, instance_id=instance_id
    )
    if metrics_port is not None:
        serve_metrics(metrics_port)
    configure_tracing(f"streamdag-run-{spec.name}")
    try:
        with handle_signals(runner):
            runner.run()
    finally:
        shutdown_tracing()
