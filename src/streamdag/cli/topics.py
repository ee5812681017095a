"""``streamdag topics PIPELINE.yaml [--create]``: the derived topics of a pipeline."""

from __future__ import annotations

from pathlib import Path

import click

from streamdag.cli.options import bootstrap_option, resolve_bootstrap
from streamdag.kafka import ensure_topics
from streamdag.pipeline import derive_topics, load_spec

__all__ = ["topics"]


@click.command()
@click.argument("spec_file", metavar="PIPELINE.yaml", type=click.Path(path_type=Path))
@click.option("--create", is_flag=True, help="Create the missing topics on the cluster.")
@bootstrap_option
def topics(spec_file: Path, create: bool, bootstrap: str | None) -> None:
    """Print the topics derived from a pipeline spec; with --create, create them."""
    spec = load_spec(spec_file)
    derived = derive_topics(spec)
    created: set[str] = set()
    if create:
        created = set(ensure_topics(resolve_bootstrap(bootstrap), derived).created)
    for t in derived:
        kind = "compacted" if t.compacted else ""
        state = ("created" if t.name in created else "exists") if create else ""
        click.echo("  ".join(x for x in (t.name, f"partitions={t.partitions}", kind, state) if x))
