"""``streamdag validate PIPELINE.yaml``: load everything ``run`` would, without Kafka."""

from __future__ import annotations

from pathlib import Path

import click

from streamdag.pipeline.validate import validate_spec

__all__ = ["validate"]


@click.command()
@click.argument(
    "spec_files",
    metavar="PIPELINE.yaml...",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path),
)
def validate(spec_files: tuple[Path, ...]) -> None:
    """Check pipeline specs and load their models (handlers, custom classes with their
    parameters, model files) as `run` would, without Kafka; print every problem.

    Each problem is one line on stderr, and the exit status is 1 if there is any; a valid
    spec prints one line on stdout."""
    failed = False
    for path in spec_files:
        found = validate_spec(path)
        for problem in found.problems:
            click.echo(f"error: {problem}", err=True)
        if found.problems:
            failed = True
        elif found.spec is not None:
            n = len(found.models)
            click.echo(
                f"{path}: pipeline {found.spec.name} is valid: {n} model{'s' if n != 1 else ''} "
                f"loaded ({', '.join(found.models)}), {len(found.spec.steps)} steps"
            )
    if failed:
        raise click.exceptions.Exit(1)
