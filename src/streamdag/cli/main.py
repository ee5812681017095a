"""The ``streamdag`` command: a thin layer that parses arguments and calls the library.

A StreamdagError becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import sys

import click

from streamdag.cli.broker import broker
from streamdag.cli.demo import demo
from streamdag.cli.errors import errors
from streamdag.cli.infer import infer
from streamdag.cli.inspect import inspect_command
from streamdag.cli.payloads import payloads
from streamdag.cli.run import run as run_command
from streamdag.cli.serve import serve
from streamdag.cli.topics import topics
from streamdag.errors import StreamdagError
from streamdag.observability.logging import configure_logging
from streamdag.settings import get_settings

__all__ = ["cli", "main", "run"]


# Long-running commands, whose logs are how operators learn what Kafka is doing.
_SERVICES = frozenset({"run", "serve"})


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="streamdag")
@click.option("--verbose", "-v", is_flag=True, help="Log Kafka client details too.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Machine-learning inference pipelines as DAGs of Kafka consumer groups."""
    settings = get_settings()
    level = "DEBUG" if verbose else settings.log_level
    if verbose:
        kafka_level = "INFO"
    elif ctx.invoked_subcommand in _SERVICES:
        kafka_level = "WARNING"  # a lost broker or coordinator shows in a service's log
    else:
        kafka_level = "CRITICAL"  # one-shot commands report failures themselves, in a line
    configure_logging(level, kafka_client_level=kafka_level, fmt=settings.log_format)


cli.add_command(broker)
cli.add_command(topics)
cli.add_command(run_command)
cli.add_command(demo)
cli.add_command(serve)
cli.add_command(infer)
cli.add_command(inspect_command)
cli.add_command(errors)
cli.add_command(payloads)


def main(argv: list[str] | None = None) -> int:
    try:
        # Without standalone mode click returns Exit's code instead of calling sys.exit.
        result = cli.main(args=argv, prog_name="streamdag", standalone_mode=False)
    except StreamdagError as exc:
        click.echo(f"error: {' '.join(str(exc).split())}", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("aborted", err=True)
        return 130
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
