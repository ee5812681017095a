"""``streamdag submit PIPELINE_SPEC --input SOURCE --output DEST`` and ``streamdag jobs``."""

from __future__ import annotations

import time
from pathlib import Path

import click

from streamdag.bulk import (
    DEFAULT_MAX_IN_FLIGHT,
    JobState,
    Sink,
    count_rows,
    default_job_name,
    error_row,
    open_sink,
    open_source,
    read_jobs,
    result_row,
    submit,
)
from streamdag.bulk.progress import open_progress, summary
from streamdag.bulk.sinks import finish_parquet
from streamdag.cli.options import kafka_options, payload_store_option, resolve_kafka
from streamdag.errors import ConfigError
from streamdag.payloads import store_from_settings
from streamdag.pipeline import load_spec

__all__ = ["jobs", "submit_command"]


class _Files:
    """The job's output and errors files as its checkpoints see them (``Journal``)."""

    def __init__(self, output: Sink, errors: Sink) -> None:
        self.sinks = {"output": output, "errors": errors}

    def positions(self) -> dict[str, int]:
        return {name: sink.position() for name, sink in self.sinks.items()}

    def rewind(self, positions: dict[str, int]) -> None:
        for name, sink in self.sinks.items():
            sink.rewind(positions.get(name, 0))


def _mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        column, sep, name = pair.partition("=")
        if not sep or not column or not name:
            raise ConfigError(f"--map {pair}: expected COLUMN=INPUT")
        mapping[column] = name
    return mapping


@click.command("submit")
@click.argument("spec_path", metavar="PIPELINE_SPEC", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--input",
    "-i",
    "source",
    required=True,
    metavar="SOURCE",
    help="A .jsonl, .csv or .parquet file, or a folder or glob of text files.",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    metavar="DEST",
    help="Results: .jsonl or .parquet.",
)
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(path_type=Path),
    default=None,
    metavar="FILE",
    help="Failures (.jsonl or .parquet) [default: DEST's stem + .errors.jsonl, beside it].",
)
@click.option(
    "--job",
    default=None,
    help="The job's name; the same name resumes it [default: from the input and the pipeline].",
)
@click.option(
    "--id-column",
    default=None,
    help="The column that holds each row's id [default: the row number; a text file's name].",
)
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="COLUMN=INPUT",
    help="Send a column as the pipeline input of another name (repeatable).",
)
@click.option(
    "--text-input",
    default="text",
    show_default=True,
    metavar="INPUT",
    help="The input a text file's contents go to.",
)
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_IN_FLIGHT,
    show_default=True,
    help="Rows sent and not yet answered, at most.",
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="No progress (a bar on a terminal, a line every 10 s elsewhere); log lines and the "
    "summary line only.",
)
@kafka_options
@payload_store_option
def submit_command(
    spec_path: Path,
    source: str,
    output: Path,
    errors_path: Path | None,
    job: str | None,
    id_column: str | None,
    maps: tuple[str, ...],
    text_input: str,
    max_in_flight: int,
    quiet: bool,
    bootstrap: str | None,
    kafka_config: Path | None,
    payload_store: str | None,
) -> int:
    """Run a bulk job: every row of SOURCE through the pipeline, results to DEST.

    Exit status 0 only when every row got a result."""
    spec = load_spec(spec_path)
    kafka = resolve_kafka(bootstrap, kafka_config)
    job = job or default_job_name(source, spec.name)
    errors_path = errors_path or output.with_name(f"{output.stem}.errors.jsonl")
    started = time.monotonic()
    previous = read_jobs(kafka, spec.name).get(job)
    if previous is not None and previous.done:
        finish_parquet(output)
        finish_parquet(errors_path)
        # The job's own span, from its first run's start to its last checkpoint.
        click.echo(summary(previous, previous.updated - previous.started))
        return _status(previous)
    before = 0 if previous is None else previous.results + previous.failures
    rows = open_source(source, id_column=id_column, text_input=text_input)
    files = _Files(open_sink(output), open_sink(errors_path))
    bar = open_progress(job, quiet=quiet)
    state: list[JobState] = []

    def progress(now: JobState) -> None:
        state[:] = [now]
        if bar is not None:
            bar.update(now)

    complete = False
    try:
        for result in submit(
            spec,
            rows,
            kafka=kafka,
            job=job,
            mapping=_mapping(maps),
            max_in_flight=max_in_flight,
            payloads=store_from_settings(payload_store),
            journal=files,
            on_progress=progress,
            source=source,
            total=count_rows(source),
        ):
            sink = files.sinks["output" if result.ok else "errors"]
            sink.write(result_row(result) if result.ok else error_row(result))
        complete = bool(state) and state[0].done
    finally:
        if bar is not None:
            bar.close()
        for sink in files.sinks.values():
            sink.close(complete=complete)
    last = state[0]
    answered = last.results + last.failures - before  # this run's: a resumed job's rate
    click.echo(summary(last, time.monotonic() - started, answered))
    return _status(last)


def _status(state: JobState) -> int:
    ok = state.done and state.failures == 0 and state.results == state.read
    return 0 if ok else 1


@click.command()
@click.argument("spec_path", metavar="PIPELINE_SPEC", type=click.Path(exists=True, path_type=Path))
@kafka_options
def jobs(spec_path: Path, bootstrap: str | None, kafka_config: Path | None) -> None:
    """List the bulk jobs of a pipeline with their counts."""
    spec = load_spec(spec_path)
    found = read_jobs(resolve_kafka(bootstrap, kafka_config), spec.name)
    if not found:
        click.echo(f"no jobs in pipeline {spec.name}")
        return
    click.echo(
        f"{'JOB':<32} {'STATE':<8} {'ROWS':>10} {'RESULTS':>10} {'FAILED':>8} "
        f"{'IN FLIGHT':>9}  UPDATED"
    )
    for state in sorted(found.values(), key=lambda s: s.updated):
        job = state.counts()
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["updated"]))
        rows = f"{job['rows']}" + ("" if job["total"] is None else f"/{job['total']}")
        click.echo(
            f"{job['job']:<32} {job['state']:<8} {rows:>10} {job['results']:>10} "
            f"{job['failed']:>8} {job['in_flight']:>9}  {when}"
        )
