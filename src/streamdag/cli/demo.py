"""``streamdag demo``: the whole idea on one machine, set-up to clean-up."""

from __future__ import annotations

import logging

import click

from streamdag.cli.options import bootstrap_option
from streamdag.demo import run_demo
from streamdag.errors import StreamdagError

__all__ = ["demo"]


@click.command()
@click.option(
    "--docs",
    "-n",
    type=click.IntRange(1, 1_000_000),
    default=200,
    show_default=True,
    help="Documents to send through the pipeline.",
)
@bootstrap_option
def demo(docs: int, bootstrap: str | None) -> None:
    """Start a local broker (unless --bootstrap is given), run the quickstart pipeline on
    DOCS documents, print results and a summary, and stop everything."""
    # Worker lifecycle lines would bury the demo's own output; -v brings them back.
    if not click.get_current_context().find_root().params.get("verbose"):
        logging.getLogger("streamdag").setLevel(logging.WARNING)
    report = run_demo(docs, bootstrap)
    click.echo(f"\n{'request':<10} {'score':>6}  {'label':<8} document")
    for rid, doc, score, label in report.rows:
        click.echo(f"{rid:<10} {score:>6.3f}  {label:<8} {doc[:70]}")
    click.echo(
        f"\n{report.received}/{report.sent} documents in {report.seconds:.2f}s "
        f"({report.docs_per_s:.0f} docs/s), latency p50 {report.percentile(50):.1f} ms, "
        f"p99 {report.percentile(99):.1f} ms, errors {report.errors}"
    )
    if report.received != report.sent or report.errors:
        raise StreamdagError(
            f"demo incomplete: {report.received}/{report.sent} answered, {report.errors} errors"
        )
