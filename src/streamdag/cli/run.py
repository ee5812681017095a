"""``streamdag run PIPELINE.yaml``: the pipeline's workers, in the foreground, until SIGTERM."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from streamdag.cli.options import (
    freeze_startup_objects,
    kafka_options,
    payload_store_option,
    resolve_kafka,
)
from streamdag.engine import PipelineRunner, handle_signals
from streamdag.engine.supervisor import Supervisor
from streamdag.errors import ConfigError, StreamdagError
from streamdag.observability.metrics import serve_metrics
from streamdag.observability.tracing import configure_tracing, shutdown_tracing
from streamdag.payloads import store_from_settings
from streamdag.pipeline import PipelinePlan, compile_plan, load_spec

__all__ = ["run"]


@click.command()
@click.argument("spec_file", metavar="PIPELINE.yaml", type=click.Path(path_type=Path))
@click.option("--steps", default=None, metavar="A,B", help="Run only these steps.")
@click.option(
    "--fuse",
    is_flag=True,
    help="Run these steps (all of them without --steps) as one fused stage: one worker, "
    "one consumer group and one transaction, handing records on in memory; every step's "
    "topics are still written.",
)
@kafka_options
@payload_store_option
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
    help="A stable id for this process: its transactional producers are named by it, "
    "so a restart fences its predecessor's open transactions at once.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes of these steps, each its own group member on a core of its "
    "own, under this one: SIGTERM reaches them all, a child that dies is restarted. "
    "Child k gets --instance-id ID-k and --metrics-port PORT+k.",
)
@click.pass_context
def run(
    ctx: click.Context,
    spec_file: Path,
    steps: str | None,
    fuse: bool,
    bootstrap: str | None,
    kafka_config: Path | None,
    payload_store: str | None,
    metrics_port: int | None,
    instance_id: str | None,
    processes: int,
) -> None:
    """Run the workers of all (or the named) steps until SIGTERM or Ctrl-C."""
    if processes > 1:
        verbose = bool(ctx.find_root().params.get("verbose"))

        def child(k: int) -> list[str]:
            command = [sys.executable, "-m", "streamdag.cli.main", *(["-v"] if verbose else [])]
            command += ["run", str(spec_file)]
            command += ["--steps", steps] if steps else []
            command += ["--fuse"] if fuse else []
            command += ["--bootstrap", bootstrap] if bootstrap else []
            command += ["--kafka-config", str(kafka_config)] if kafka_config else []
            command += ["--payload-store", payload_store] if payload_store else []
            if metrics_port is not None:
                command += ["--metrics-port", str(metrics_port + k if metrics_port else 0)]
            command += ["--instance-id", f"{instance_id}-{k}"] if instance_id else []
            return command

        # A bad spec, or steps that cannot run so, is one error here, not one per child.
        _units(compile_plan(load_spec(spec_file)), _chosen(steps), fuse)
        if Supervisor(processes, child).run() != 0:
            raise StreamdagError(f"worker processes of {spec_file} kept dying or did not stop")
        return
    spec = load_spec(spec_file)
    runner = PipelineRunner(
        compile_plan(spec),
        resolve_kafka(bootstrap, kafka_config),
        steps=_chosen(steps),
        instance_id=instance_id,
        payloads=store_from_settings(payload_store),
        fuse=fuse,
    )
    if metrics_port is not None:
        serve_metrics(metrics_port)
    configure_tracing(f"streamdag-run-{spec.name}")
    freeze_startup_objects()
    try:
        with handle_signals(runner):
            runner.run()
    finally:
        shutdown_tracing()


def _chosen(steps: str | None) -> list[str] | None:
    return [s.strip() for s in steps.split(",") if s.strip()] if steps else None


def _units(plan: PipelinePlan, chosen: list[str] | None, fuse: bool) -> None:
    """Raise ConfigError if ``chosen`` (and ``fuse``) cannot run as the plan says."""
    unknown = [s for s in chosen or () if s not in plan.nodes]
    if unknown:
        raise ConfigError(
            f"unknown step {', '.join(unknown)} in --steps; {plan.name} has {', '.join(plan.nodes)}"
        )
    (plan.fused(chosen) if fuse else plan).units(chosen)
