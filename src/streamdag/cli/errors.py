"""``streamdag errors PIPELINE.yaml``: the records that failed for good, and their replay."""

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
from streamdag.errors import NotFound
from streamdag.observability.errors_view import list_failures, replay_failures
from streamdag.observability.render import format_failures, format_replay
from streamdag.observability.scan import format_time, parse_since
from streamdag.payloads import store_from_settings
from streamdag.pipeline import compile_plan, load_spec

__all__ = ["errors"]


@click.command()
@click.argument("spec_file", metavar="PIPELINE.yaml", type=click.Path(path_type=Path))
@click.option(
    "--since",
    default="1h",
    show_default=True,
    metavar="DURATION|TIME",
    help="Look back this far (15m, 1h, 2d) or to this ISO time.",
)
@click.option("--step", default=None, help="Only failures of this step.")
@click.option("--code", default=None, help="Only this error code (model_error, ...).")
@click.option(
    "--request-id",
    "-r",
    "request_ids",
    multiple=True,
    metavar="ID",
    help="Only this request (repeatable).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, metavar="N", help="The newest N."
)
@click.option(
    "--replay",
    is_flag=True,
    help="Send the selected failed requests to the pipeline's inputs topic again, as "
    "their callers sent them, under the same request ids.",
)
@click.option("--force", is_flag=True, help="With --replay: also requests sent again since.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@show_values_option
@kafka_options
@payload_store_option
def errors(
    spec_file: Path,
    since: str,
    step: str | None,
    code: str | None,
    request_ids: tuple[str, ...],
    limit: int | None,
    replay: bool,
    force: bool,
    as_json: bool,
    show_values: bool,
    bootstrap: str | None,
    kafka_config: Path | None,
    payload_store: str | None,
) -> None:
    """List the failed records of a pipeline (time, step, code, message, attempts, request
    id, the record that failed); with --replay, send those requests again.

    --json shows each record's headers, values that may be credentials as [redacted]
    (see `streamdag inspect --help`), and its tensors by datatype, shape and digest
    (--show-values adds their first values); --replay sends the requests, headers and
    values, as the callers did."""
    if force and not replay:
        raise click.UsageError("--force goes with --replay")
    plan = compile_plan(load_spec(spec_file))
    since_ms = parse_since(since)
    kafka = resolve_kafka(bootstrap, kafka_config)
    payloads = store_from_settings(payload_store)
    failures = list_failures(
        plan,
        kafka,
        since_ms=since_ms,
        step=step,
        code=code,
        request_ids=request_ids,
        limit=limit,
        payloads=payloads,
    )
    absent = sorted(set(request_ids) - {f.request_id for f in failures})
    if replay and absent:
        raise NotFound(
            f"no failed record of request {', '.join(absent)} in {plan.errors_topic} "
            f"since {format_time(since_ms)}; nothing replayed"
        )
    if not replay:
        if as_json:
            click.echo(json.dumps([f.to_dict(values=show_values) for f in failures], indent=2))
        elif failures:
            for line in format_failures(failures):
                click.echo(line)
        else:
            click.echo(f"no failed records in {plan.errors_topic} since {format_time(since_ms)}")
        return
    result = replay_failures(plan, kafka, failures, force=force, payloads=payloads)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for line in format_replay(result):
            click.echo(line)
    if result.missing:
        raise NotFound(
            f"original request of {', '.join(result.missing)} not found on "
            f"{result.topic}; not replayed"
        )
