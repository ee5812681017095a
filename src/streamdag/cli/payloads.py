"""``streamdag payloads gc``: delete payload-store objects no record can name any more."""

from __future__ import annotations

import time
from pathlib import Path

import click

from streamdag.cli.options import kafka_options, payload_store_option, resolve_kafka
from streamdag.errors import ConfigError
from streamdag.observability.scan import parse_since
from streamdag.payloads import effective_retention_s, store_from_settings

__all__ = ["payloads"]


@click.group()
def payloads() -> None:
    """The payload store that carries records too large for Kafka."""


@payloads.command()
@payload_store_option
@click.option(
    "--older-than",
    default=None,
    metavar="DURATION",
    help="Keep objects this long at least (1h, 2d, 1w) [env STREAMDAG_PAYLOAD_RETENTION_S; "
    "default 7d]; never less than the longest retention.ms of the streamdag.* topics.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@kafka_options
def gc(
    payload_store: str | None,
    older_than: str | None,
    dry_run: bool,
    bootstrap: str | None,
    kafka_config: Path | None,
) -> None:
    """Delete the objects older than the retention: the longer of --older-than and the
    longest retention.ms the broker reports for the streamdag.* topics (a topic that keeps
    records forever: nothing is deleted). Workers with a payload store sweep it the same
    way every hour."""
    store = store_from_settings(payload_store)
    if store is None:
        raise ConfigError("no payload store: give --payload-store or STREAMDAG_PAYLOAD_STORE")
    if older_than is not None:
        now_ms = int(time.time() * 1000)
        store.retention_s = (now_ms - parse_since(older_than, now_ms)) / 1000
    retention = effective_retention_s(store, resolve_kafka(bootstrap, kafka_config))
    if retention is None:
        click.echo(f"{store.url}: a streamdag topic keeps its records forever; nothing deleted")
        return
    removed = store.sweep(retention, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{store.url}: objects kept {retention / 3600:g} h; {verb} {len(removed)} hour(s)")
    for url in removed:
        click.echo(f"  {url}")
