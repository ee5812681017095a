"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from streamdag.settings import get_settings

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["bootstrap_option", "resolve_bootstrap"]


def bootstrap_option(func: F) -> F:
    return click.option(
        "--bootstrap",
        "-b",
        default=None,
        metavar="HOST:PORT",
        help="Kafka bootstrap servers [env STREAMDAG_BOOTSTRAP_SERVERS; default localhost:9092]",
    )(func)


def resolve_bootstrap(value: str | None) -> str:
    return value or get_settings().bootstrap_servers
