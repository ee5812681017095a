"""The ``streamdag`` command: a thin layer that parses arguments and calls the library.

A StreamdagError becomes one line on stderr and exit status 1. A command's module is
imported when the command runs, not before: ``streamdag run`` never pays for the web
server, ``streamdag infer`` never for the engine (a worker's start is part of a drain).
"""

from __future__ import annotations

import importlib
import sys

import click

from streamdag.errors import StreamdagError
from streamdag.observability.logging import configure_logging
from streamdag.settings import get_settings

__all__ = ["cli", "main", "run"]

# Command name -> "module:attribute" of its click command, in the order of --help.
_COMMANDS = {
    "broker": "streamdag.cli.broker:broker",
    "validate": "streamdag.cli.validate:validate",
    "topics": "streamdag.cli.topics:topics",
    "run": "streamdag.cli.run:run",
    "demo": "streamdag.cli.demo:demo",
    "serve": "streamdag.cli.serve:serve",
    "infer": "streamdag.cli.infer:infer",
    "inspect": "streamdag.cli.inspect:inspect_command",
    "errors": "streamdag.cli.errors:errors",
    "payloads": "streamdag.cli.payloads:payloads",
    "submit": "streamdag.cli.submit:submit_command",
    "jobs": "streamdag.cli.submit:jobs",
}


class _LazyGroup(click.Group):
    """A group whose subcommands are imported by name, on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*_COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command), target
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with its whole first sentence: click cuts summaries to fit one line
        of 80 columns, which left most of ours ending in "..." mid-sentence."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=_WHOLE)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


_WHOLE = 1_000  # characters: more than any summary, so none is cut

# Long-running commands, whose logs are how operators learn what Kafka is doing.
_SERVICES = frozenset({"run", "serve"})


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
