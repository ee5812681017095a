"""``streamdag topics PIPELINE.yaml [--create]``: the derived topics of a pipeline."""

from __future__ import annotations

from pathlib import Path

import click

from streamdag.cli.options import kafka_options, resolve_kafka
from streamdag.kafka import ensure_topics
from streamdag.pipeline import derive_topics, load_spec
from streamdag.settings import check_replication_factor

__all__ = ["topics"]


@click.command()
@click.argument("spec_file", metavar="PIPELINE.yaml", type=click.Path(path_type=Path))
@click.option("--create", is_flag=True, help="Create the missing topics on the cluster.")
@click.option(
    "--replication-factor",
    type=int,
    default=None,
    metavar="N",
    help="Replicas of each topic --create makes [env STREAMDAG_TOPIC_REPLICATION_FACTOR; "
    "default -1: the cluster's default.replication.factor].",
)
@kafka_options
def topics(
    spec_file: Path,
    create: bool,
    replication_factor: int | None,
    bootstrap: str | None,
    kafka_config: Path | None,
) -> None:
    """Print the topics derived from a pipeline spec; with --create, create them."""
    if replication_factor is not None:
        try:
            check_replication_factor(replication_factor)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--replication-factor") from None
    spec = load_spec(spec_file)
    derived = derive_topics(spec)
    created: set[str] = set()
    if create:
        result = ensure_topics(
            resolve_kafka(bootstrap, kafka_config), derived, replication_factor=replication_factor
        )
        created = set(result.created)
    for t in derived:
        kind = "compacted" if t.compacted else ""
        state = ("created" if t.name in created else "exists") if create else ""
        click.echo("  ".join(x for x in (t.name, f"partitions={t.partitions}", kind, state) if x))
