"""How to reach a Kafka cluster: bootstrap servers and every other librdkafka property.

A ``KafkaConnection`` is built once per command, from (highest precedence first):

    --bootstrap HOST:PORT,...           the servers only
    --kafka-config FILE                 a Java-style .properties file, as the Kafka tools'
                                        --command-config takes
    STREAMDAG_KAFKA_<PROPERTY>          one property, dots as underscores
                                        (STREAMDAG_KAFKA_SECURITY_PROTOCOL=SASL_SSL)
    STREAMDAG_BOOTSTRAP_SERVERS         the servers (default localhost:9092)

and then carried, unchanged, to every client streamdag makes (``kafka/config.py``).
Properties that hold secrets (passwords, client secrets, inline private keys) are kept as
``SecretStr``: they show as ``**********`` in ``repr``, ``describe()``, logs and errors,
and are revealed only in the dictionary handed to librdkafka.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

from streamdag.errors import ConfigError
from streamdag.settings import KAFKA_PREFIX, get_settings, kafka_environment

__all__ = [
    "KafkaConnection",
    "environment_properties",
    "is_secret",
    "parse_properties",
    "read_properties",
]

DEFAULT_BOOTSTRAP = "localhost:9092"

# The largest record a streamdag producer writes unless ``message.max.bytes`` says
# otherwise: librdkafka's default, under the brokers' default max.message.bytes
# (1 MiB + 12). Key, value and headers count.
MESSAGE_MAX_BYTES = 1_000_000

# Property names whose values are never shown.
_SECRET = re.compile(
    r"password|secret|(^|\.)key\.pem$|(^|\.)private\.key|^sasl\.oauthbearer\.config$"
)

# What a Java client's sasl.jaas.config says, for the login modules librdkafka can stand in
# for with sasl.username / sasl.password.
_JAAS = re.compile(r"(?:Plain|Scram)LoginModule\s+required(?P<options>.*?);?\s*$", re.DOTALL)
_JAAS_OPTION = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')


def is_secret(name: str) -> bool:
    """Whether the librdkafka property ``name`` holds a secret."""
    return _SECRET.search(name.lower()) is not None


class KafkaConnection(BaseModel):
    """The servers and librdkafka properties every streamdag client of one cluster uses.

    ``properties`` are plain librdkafka properties (``security.protocol``,
    ``sasl.mechanism``, ``ssl.ca.location``, ``client.rack``, ...); ``secrets`` those whose
    values must never be shown. Neither holds ``bootstrap.servers``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    properties: dict[str, str] = {}
    secrets: dict[str, SecretStr] = {}

    # -- building ----------------------------------------------------------------------
    @classmethod
    def of(cls, value: str | KafkaConnection) -> KafkaConnection:
        """``value`` itself, or a plaintext connection to the servers ``value`` names."""
        return value if isinstance(value, KafkaConnection) else cls(bootstrap_servers=value)

    @classmethod
    def from_properties(
        cls, properties: Mapping[str, str], *, origin: str = "the Kafka settings"
    ) -> KafkaConnection:
        """A connection from librdkafka (or Java client) properties; ``origin`` names
        where they came from in errors."""
        plain: dict[str, str] = {}
        secret: dict[str, SecretStr] = {}
        servers = DEFAULT_BOOTSTRAP
        for name, value in _translated(properties, origin).items():
            if name == "bootstrap.servers":
                servers = value
            elif is_secret(name):
                secret[name] = SecretStr(value)
            else:
                plain[name] = value
        if not servers.strip():
            raise ConfigError(f"{origin}: bootstrap.servers is empty")
        return cls(bootstrap_servers=servers, properties=plain, secrets=secret)

    @classmethod
    def resolve(
        cls,
        *,
        bootstrap: str | None = None,
        config_file: Path | None = None,
        environment: Mapping[str, str] | None = None,
        default_bootstrap: str = DEFAULT_BOOTSTRAP,
    ) -> KafkaConnection:
        """The connection a command uses (see the module docstring for the precedence).
        ``environment`` holds ``STREAMDAG_KAFKA_*`` properties already turned into
        librdkafka names; ``default_bootstrap`` is ``STREAMDAG_BOOTSTRAP_SERVERS``."""
        merged: dict[str, str] = {"bootstrap.servers": default_bootstrap}
        merged.update(environment or {})
        origin = "STREAMDAG_KAFKA_* settings"
        if config_file is not None:
            merged.update(read_properties(config_file))
            origin = str(config_file)
        if bootstrap:
            merged["bootstrap.servers"] = bootstrap
        return cls.from_properties(merged, origin=origin)

    @classmethod
    def from_settings(
        cls, *, bootstrap: str | None = None, config_file: Path | None = None
    ) -> KafkaConnection:
        """The connection of a command: its ``--bootstrap`` and ``--kafka-config``, then
        ``STREAMDAG_KAFKA_*`` and ``STREAMDAG_BOOTSTRAP_SERVERS``."""
        return cls.resolve(
            bootstrap=bootstrap,
            config_file=config_file,
            environment=environment_properties(kafka_environment(), KAFKA_PREFIX),
            default_bootstrap=get_settings().bootstrap_servers,
        )

    def with_bootstrap(self, servers: str) -> KafkaConnection:
        return self.model_copy(update={"bootstrap_servers": servers})

    # -- using -------------------------------------------------------------------------
    def client_properties(self) -> dict[str, str]:
        """What librdkafka gets: every property, secrets revealed. Hand it only to
        confluent-kafka, never to a log or an error message."""
        config = {"bootstrap.servers": self.bootstrap_servers, **self.properties}
        for name, value in self.secrets.items():
            config[name] = value.get_secret_value()
        return config

    @property
    def max_record_bytes(self) -> int:
        """The largest record a producer of this connection writes: ``message.max.bytes``
        if set, else librdkafka's default."""
        return int(self.properties.get("message.max.bytes", MESSAGE_MAX_BYTES))

    @property
    def security_protocol(self) -> str:
        return self.properties.get("security.protocol", "PLAINTEXT").upper()

    def describe(self) -> str:
        """One line for people: the servers and the non-secret settings that matter."""
        parts = [self.bootstrap_servers]
        for name in ("security.protocol", "sasl.mechanism", "sasl.username"):
            if name in self.properties:
                parts.append(f"{name}={self.properties[name]}")
        return " ".join(parts)

    def __str__(self) -> str:
        return self.describe()


def parse_properties(text: str) -> dict[str, str]:
    """A Java ``.properties`` text as a dictionary: ``key=value``, ``key: value`` or
    ``key value``; ``#`` and ``!`` comments; a trailing backslash continues a line;
    backslash escapes (``\\t``, ``\\n``, ``\\uXXXX``, ``\\=``...) as Java reads them."""
    result: dict[str, str] = {}
    logical: list[str] = []
    for raw in text.splitlines():
        line = raw.lstrip() if logical else raw.strip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if _continues(line):
            logical.append(line[:-1])
            continue
        logical.append(line)
        key, value = _split("".join(logical))
        logical = []
        result[key] = value
    if logical:
        key, value = _split("".join(logical))
        result[key] = value
    return result


def read_properties(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read Kafka config {path}: {exc.strerror or exc}") from exc
    return parse_properties(text)


def _continues(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _split(line: str) -> tuple[str, str]:
    key_chars: list[str] = []
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            key_chars.append(line[i : i + 2])
            i += 2
            continue
        if c in "=: \t\f":
            break
        key_chars.append(c)
        i += 1
    rest = line[i:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return _unescape("".join(key_chars)), _unescape(rest)


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 >= len(text):
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def _translated(properties: Mapping[str, str], origin: str) -> dict[str, str]:
    """Java client properties librdkafka has no use for, turned into its own:
    ``sasl.jaas.config`` with PLAIN or SCRAM credentials becomes ``sasl.username`` and
    ``sasl.password``."""
    result = {k.strip(): v.strip() for k, v in properties.items()}
    jaas = result.pop("sasl.jaas.config", None)
    if jaas is not None:
        match = _JAAS.search(jaas)
        options = dict(_JAAS_OPTION.findall(match.group("options"))) if match else {}
        if "username" not in options or "password" not in options:
            raise ConfigError(
                f"{origin}: sasl.jaas.config: only PlainLoginModule and ScramLoginModule "
                'with username="..." password="..." can be used; set sasl.username and '
                "sasl.password instead"
            )
        result.setdefault("sasl.username", options["username"])
        result.setdefault("sasl.password", options["password"])
    return result


def environment_properties(environ: Mapping[str, str], prefix: str) -> dict[str, str]:
    """``<prefix>SECURITY_PROTOCOL=SASL_SSL`` -> ``{"security.protocol": "SASL_SSL"}``."""
    return {
        name[len(prefix) :].lower().replace("_", "."): value
        for name, value in environ.items()
        if name.upper().startswith(prefix) and len(name) > len(prefix)
    }
