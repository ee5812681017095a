"""``streamdag demo``: the medical-records pipeline on one machine, set-up to clean-up."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from streamdag.cli.broker import fetch_kafka_jars
from streamdag.cli.options import kafka_options, resolve_kafka
from streamdag.demo import DemoOptions, run_demo
from streamdag.demo.example import MedicalRecords
from streamdag.errors import StreamdagError
from streamdag.settings import get_settings

__all__ = ["demo"]


@click.command()
@click.option(
    "--docs",
    "-n",
    type=click.IntRange(1, 1_000_000),
    default=200,
    show_default=True,
    help="Notes to send through the pipeline.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Leave the pipeline and the gateway running afterwards, until Ctrl-C or SIGTERM.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=16,
    show_default=True,
    help="Requests in flight through each of REST and gRPC.",
)
@click.option(
    "--notes-out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Only write DOCS synthetic notes to DIR, one text file each (for streamdag submit).",
)
@kafka_options
def demo(
    docs: int,
    keep: bool,
    concurrency: int,
    notes_out: Path | None,
    bootstrap: str | None,
    kafka_config: Path | None,
) -> None:
    """Train the example's models if needed, start a local broker (unless --bootstrap,
    --kafka-config or STREAMDAG_BOOTSTRAP_SERVERS names a cluster), the medical-records
    pipeline's workers
    and a REST+gRPC gateway; send DOCS synthetic notes through both front doors; print
    results and a summary; stop everything. Exits 1 if any note failed or went unanswered."""
    if notes_out is not None:
        notes_out.mkdir(parents=True, exist_ok=True)
        for doc in MedicalRecords().documents(docs):
            (notes_out / f"{doc.id}.txt").write_text(doc.text)
        click.echo(f"{docs} notes written to {notes_out}")
        return
    # Lifecycle lines of the server and gateway would bury the demo's own output; -v
    # brings them back.
    if not click.get_current_context().find_root().params.get("verbose"):
        logging.getLogger("streamdag").setLevel(logging.WARNING)
    named = bootstrap or kafka_config or "bootstrap_servers" in get_settings().model_fields_set
    if not named:
        fetch_kafka_jars()
    options = DemoOptions(
        docs=docs,
        kafka=resolve_kafka(bootstrap, kafka_config) if named else None,
        kafka_config=kafka_config,
        keep=keep,
        concurrency=concurrency,
    )
    report = run_demo(options, out=click.echo)
    if not report.ok:
        raise StreamdagError(
            f"demo failed: {report.answered}/{report.sent} notes answered, "
            f"{report.errors} errors ({report.unanswered} unanswered)"
        )
