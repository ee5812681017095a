"""``streamdag infer NAME --data JSON``: one OIP request to a running ``streamdag serve``,
sent by ``streamdag.Client``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from streamdag.cli.options import with_serve_hint
from streamdag.client import Client, Protocol
from streamdag.errors import ConfigError, InvalidInput, StreamdagError, Unauthenticated
from streamdag.protocol import request_from_json, response_to_json
from streamdag.settings import get_settings

__all__ = ["infer", "request_body"]

DEFAULT_URL = "127.0.0.1:8080"  # http://, or https:// with --cacert or --cert
DEFAULT_GRPC = "127.0.0.1:8081"
_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command()
@click.argument("name", metavar="PIPELINE_OR_MODEL")
@click.option(
    "--data",
    "-d",
    required=True,
    metavar="JSON|@FILE",
    help='An OIP request body {"inputs": [...]}, or {"tensor": nested list, ...} with the '
    "datatype taken from the values (float FP32, int INT64, string BYTES, bool BOOL); "
    "@FILE reads it from a file, @- from stdin.",
)
@click.option(
    "--url",
    default=DEFAULT_URL,
    metavar="URL",
    help="The server's REST address [default: http://127.0.0.1:8080; https:// with "
    "--cacert or --cert].",
)
@click.option(
    "--grpc",
    "grpc_target",
    is_flag=False,
    flag_value=DEFAULT_GRPC,
    default=None,
    metavar="[HOST:PORT]",
    help=f"Use the server's gRPC port instead of REST; alone, {DEFAULT_GRPC}.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the answer.",
)
@click.option("--id", "request_id", default=None, help="Request id [default: the server's].")
@click.option(
    "--token",
    default=None,
    metavar="TOKEN",
    help="Bearer token for a server started with --auth-tokens; prefer the environment, "
    "which other users cannot list [env STREAMDAG_TOKEN].",
)
@click.option(
    "--cacert",
    type=_file,
    default=None,
    metavar="FILE",
    help="Call over TLS (https, or a secure gRPC channel), trusting the server's "
    "certificate if this PEM CA signed it.",
)
@click.option(
    "--cert",
    type=_file,
    default=None,
    metavar="FILE",
    help="PEM client certificate, for a server started with --tls-client-ca; needs --key.",
)
@click.option(
    "--key", type=_file, default=None, metavar="FILE", help="Unencrypted PEM key of --cert."
)
def infer(
    name: str,
    data: str,
    url: str,
    grpc_target: str | None,
    timeout: float,
    request_id: str | None,
    token: str | None,
    cacert: Path | None,
    cert: Path | None,
    key: Path | None,
) -> None:
    """Send one inference request to a model or pipeline of `streamdag serve` and print the
    response as OIP JSON."""
    secret = get_settings().token
    token = token or (secret.get_secret_value() if secret else None)
    body = request_body(data, request_id)
    try:
        # Checked here so that a bad --data is reported as such, before any connection.
        request = request_from_json(body, model_name=name)
    except InvalidInput as exc:
        raise ConfigError(f"--data: {exc}") from exc
    protocol: Protocol = "grpc" if grpc_target is not None else "rest"
    try:
        with Client(
            grpc_target or url,
            protocol=protocol,
            token=token,
            cacert=cacert,
            cert=cert,
            key=key,
            timeout=timeout,
        ) as client:
            response = client.infer_request(request)
    except Unauthenticated as exc:
        hint = "a token the server accepts" if token else "a token: --token or STREAMDAG_TOKEN"
        raise Unauthenticated(f"{exc} (give {hint})") from exc
    except StreamdagError as exc:
        raise with_serve_hint(exc) from exc.__cause__
    click.echo(json.dumps(response_to_json(response), indent=2, allow_nan=True))


def request_body(data: str, request_id: str | None = None) -> dict[str, Any]:
    """The OIP JSON request body that ``--data`` stands for; ``ConfigError`` if none."""
    text = _read(data)
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--data: not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict) or not parsed:
        raise ConfigError('--data: expected a JSON object, {"inputs": [...]} or {"x": [...]}')
    inputs = parsed.get("inputs")
    if isinstance(inputs, list) and all(isinstance(item, dict) for item in inputs):
        body = dict(parsed)
    else:
        body = {"inputs": [_tensor(key, value) for key, value in parsed.items()]}
    if request_id is not None:
        body["id"] = request_id
    return body


def _read(data: str) -> str:
    if not data.startswith("@"):
        return data
    if data == "@-":
        return sys.stdin.read()
    try:
        return Path(data[1:]).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--data: cannot read {data[1:]}: {exc}") from exc


def _tensor(name: str, value: Any) -> dict[str, Any]:
    """One input of the shorthand form: its shape from the nesting, datatype from the values."""
    shape: list[int] = []
    level = value
    while isinstance(level, list):
        shape.append(len(level))
        if not level:
            break
        level = level[0]
    leaves: list[Any] = []
    _flatten(name, value, shape, leaves)
    return {"name": name, "shape": shape, "datatype": _datatype(name, leaves), "data": leaves}


def _flatten(name: str, value: Any, shape: list[int], out: list[Any], depth: int = 0) -> None:
    if depth == len(shape):
        if isinstance(value, list):
            raise ConfigError(f"--data: tensor {name!r} is not rectangular (shape {shape})")
        out.append(value)
        return
    if not isinstance(value, list) or len(value) != shape[depth]:
        raise ConfigError(f"--data: tensor {name!r} is not rectangular (shape {shape})")
    for item in value:
        _flatten(name, item, shape, out, depth + 1)


def _datatype(name: str, values: list[Any]) -> str:
    kinds = {type(v) for v in values}
    if kinds <= {bool} and kinds:
        return "BOOL"
    if kinds <= {str} and kinds:
        return "BYTES"
    if kinds <= {int}:
        return "INT64" if kinds else "FP32"  # an empty tensor: any datatype would do
    if kinds <= {int, float}:
        return "FP32"
    found = ", ".join(sorted(_JSON_NAMES.get(k, k.__name__) for k in kinds))
    raise ConfigError(
        f"--data: tensor {name!r} holds {found}; the shorthand takes numbers, strings or "
        'booleans, one kind per tensor (give the datatype in the {"inputs": [...]} form)'
    )


_JSON_NAMES = {
    bool: "booleans",
    int: "numbers",
    float: "numbers",
    str: "strings",
    dict: "objects",
    type(None): "nulls",
}
