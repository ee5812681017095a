"""Named bearer tokens for the front doors (``streamdag serve --auth-tokens FILE``).

The file holds one ``name: token`` per line, or ``name: token admin`` for an
administrator; ``#`` starts a comment line, blank lines are skipped. The name is who
called: the doors put it in the ``streamdag-caller`` header of the request record, and
``inspect``, ``errors`` and the web view show it. It is also whose results a caller may
read: a job's result goes only to the name that submitted it, and the web view's request
search and record contents only to administrators, who may read everything. The token is the
secret: only its SHA-256 is kept, and a presented token is compared with every known one
in constant time (``hmac.compare_digest`` over the digests, no early exit), so neither the
answer's timing nor the order of the file tells an attacker how close a guess came.

Each door asks ``Tokens.caller`` (REST: ``Tokens.identify``, which also tells whether the
name is an administrator) with the value of its ``authorization`` header (REST) or
metadata key (gRPC), ``Bearer <token>`` in both; the REST door does so in an ASGI
middleware, the gRPC door in a server interceptor.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from streamdag.errors import ConfigError, Unauthenticated

__all__ = ["ADMIN", "CALLER_STATE", "Caller", "Tokens"]

# A name goes into a Kafka header and log lines: keep it to one plain word.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")
# What an HTTP header value and gRPC metadata carry unchanged: printable ASCII, no spaces.
_TOKEN = re.compile(r"^[\x21-\x7e]+$")
_SCHEME = "bearer"
ADMIN = "admin"
"""The mark after a token that makes its name an administrator."""
CALLER_STATE = "streamdag_caller"
"""Where the REST door leaves a request's ``Caller`` (ASGI scope state) for its routes."""


@dataclass(frozen=True)
class Caller:
    """Who sent a request: its token's name, and whether the token is an administrator's."""

    name: str
    admin: bool = False


class Tokens:
    """The tokens a server accepts, by name; only each token's SHA-256 is kept.

    ``tokens`` maps names to tokens, ``admins`` names the administrators among them; a
    name or token that could not travel in a header, a token given to two names, or an
    administrator without a token is a ``ConfigError``.
    """

    def __init__(self, tokens: Mapping[str, str], *, admins: Collection[str] = ()) -> None:
        if not tokens:
            raise ConfigError("no tokens: a server that checks tokens needs at least one")
        unknown = sorted(set(admins) - set(tokens))
        if unknown:
            raise ConfigError(f"administrator {unknown[0]!r} has no token")
        self._admins = frozenset(admins)
        self._digests: list[tuple[str, bytes]] = []
        for name, token in tokens.items():
            problem = _problem(name, token)
            if problem:
                raise ConfigError(problem)
            self._add(name, token)

    @classmethod
    def from_file(cls, path: Path) -> Tokens:
        """The tokens of ``path``; ``ConfigError`` naming the file and line of a problem."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"cannot read the token file {path}: {why}") from exc
        tokens: dict[str, str] = {}
        admins: list[str] = []
        owners: dict[str, str] = {}  # token -> name
        lines: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            where = f"{path}:{number}"
            name, colon, rest = (part.strip() for part in stripped.partition(":"))
            if not colon:
                raise ConfigError(f"{where}: expected `name: token`")
            token, _, mark = rest.partition(" ")
            if mark.strip() not in ("", ADMIN):
                raise ConfigError(
                    f"{where}: the token of {name!r} holds spaces, or is followed by something "
                    f"other than the mark `{ADMIN}`"
                )
            problem = _problem(name, token)
            if problem:
                raise ConfigError(f"{where}: {problem}")
            if name in tokens:
                raise ConfigError(f"{where}: name {name!r} is already used on line {lines[name]}")
            other = owners.get(token)
            if other is not None:
                raise ConfigError(
                    f"{where}: the token of {name!r} is also that of {other!r} "
                    f"(line {lines[other]}); each name needs its own"
                )
            tokens[name] = token
            if mark.strip() == ADMIN:
                admins.append(name)
            owners[token] = name
            lines[name] = number
        if not tokens:
            raise ConfigError(f"{path}: no tokens (expected one `name: token` per line)")
        return cls(tokens, admins=admins)

    def names(self) -> list[str]:
        return [name for name, _ in self._digests]

    def is_admin(self, name: str) -> bool:
        """Whether the tokens file marks ``name`` as an administrator."""
        return name in self._admins

    def identify(self, authorization: str | None) -> Caller:
        """The caller whose token ``authorization`` holds; else ``Unauthenticated``."""
        name = self.caller(authorization)
        return Caller(name, self.is_admin(name))

    def caller(self, authorization: str | None) -> str:
        """The name of the token in ``authorization`` (``Bearer <token>``); else
        ``Unauthenticated``, whose message never repeats what was sent."""
        if not authorization:
            raise Unauthenticated("this server needs a token: send `authorization: Bearer <token>`")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != _SCHEME or not token.strip():
            raise Unauthenticated("the authorization header must be `Bearer <token>`")
        digest = hashlib.sha256(token.strip().encode("utf-8", errors="replace")).digest()
        found: str | None = None
        for name, known in self._digests:  # all of them, whatever matched before
            if hmac.compare_digest(digest, known):
                found = name
        if found is None:
            raise Unauthenticated("the token is not one this server accepts")
        return found

    def _add(self, name: str, token: str) -> None:
        digest = hashlib.sha256(token.encode()).digest()
        if any(hmac.compare_digest(digest, known) for _, known in self._digests):
            raise ConfigError(f"the token of {name!r} is also another name's token")
        self._digests.append((name, digest))


def _problem(name: str, token: str) -> str | None:
    if not name:
        return "the name is empty (expected `name: token`)"
    if not _NAME.match(name):
        return (
            f"name {name!r}: use letters, digits and . _ @ + - "
            "(it becomes the streamdag-caller header)"
        )
    if not token:
        return f"the token of {name!r} is empty"
    if not _TOKEN.match(token):
        return f"the token of {name!r} holds spaces or characters a header cannot carry"
    return None
