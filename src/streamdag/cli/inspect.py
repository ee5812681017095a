"""``streamdag inspect PIPELINE.yaml --request-id ID | --last N``: where a request went
through the pipeline, or the last records of one of its topics."""

from __future__ import annotations

import json
from pathlib import Path

import click

from streamdag.cli.options import (
    kafka_options,
    payload_store_option,
    resolve_kafka,
    show_values_option,
)
from streamdag.observability.inspect import last_records, trace_request
from streamdag.observability.render import format_records, format_trace
from streamdag.observability.scan import parse_since
from streamdag.payloads import store_from_settings
from streamdag.pipeline import compile_plan, load_spec

__all__ = ["inspect_command"]

DEFAULT_LAST = 10


@click.command("inspect")
@click.argument("spec_file", metavar="PIPELINE.yaml", type=click.Path(path_type=Path))
@click.option("--request-id", "-r", default=None, metavar="ID", help="The request to follow.")
@click.option(
    "--since",
    default=None,
    metavar="DURATION|TIME",
    help="Look back this far (15m, 1h, 2d) or to this ISO time "
    "[default: 24h with --request-id, no bound with --last].",
)
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help=f"Without --request-id: the last N records of a topic [default: {DEFAULT_LAST}].",
)
@click.option("--step", default=None, help="With --last: that step's outputs topic.")
@click.option(
    "--topic",
    type=click.Choice(["inputs", "outputs", "errors"]),
    default=None,
    help="With --last: that topic of the pipeline [default: outputs].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@show_values_option
@kafka_options
@payload_store_option
def inspect_command(
    spec_file: Path,
    request_id: str | None,
    since: str | None,
    last: int | None,
    step: str | None,
    topic: str | None,
    as_json: bool,
    show_values: bool,
    bootstrap: str | None,
    kafka_config: Path | None,
    payload_store: str | None,
) -> None:
    """Follow one request through every topic of a pipeline, in order of time, or show
    the last records of one of its topics.

    Tensors are shown by datatype, shape and digest; --show-values adds their first
    values. Header values that may be credentials (authorization, cookies, API keys, tokens,
    secrets, passwords) are shown as [redacted]; STREAMDAG_REDACT_HEADERS adds name
    patterns (comma-separated globs, e.g. 'x-tenant,*session*')."""
    if request_id is not None and (last is not None or step or topic):
        raise click.UsageError("--last, --step and --topic go without --request-id")
    if step and topic:
        raise click.UsageError("give --step or --topic, not both")
    plan = compile_plan(load_spec(spec_file))
    since_ms = parse_since(since) if since is not None else None
    kafka = resolve_kafka(bootstrap, kafka_config)
    payloads = store_from_settings(payload_store)
    if request_id is not None:
        trace = trace_request(plan, kafka, request_id, since_ms=since_ms, payloads=payloads)
        if as_json:
            lines = [json.dumps(trace.to_dict(values=show_values), indent=2)]
        else:
            lines = format_trace(trace, values=show_values)
    else:
        records = last_records(
            plan,
            kafka,
            last or DEFAULT_LAST,
            source=step or topic or "outputs",
            since_ms=since_ms,
            payloads=payloads,
        )
        if as_json:
            lines = [json.dumps([r.to_dict(values=show_values) for r in records], indent=2)]
        else:
            lines = format_records(records, values=show_values)
    for line in lines:
        click.echo(line)
