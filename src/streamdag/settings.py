"""Settings from the environment (prefix ``STREAMDAG_``); nothing else reads ``os.environ``."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "KAFKA_PREFIX",
    "Settings",
    "check_replication_factor",
    "get_settings",
    "kafka_environment",
]


def _xdg(variable: str, fallback: str) -> Path:
    """``$variable/streamdag``, else ``~/<fallback>/streamdag`` (the XDG base directories;
    a relative value is ignored, as the specification says)."""
    base = os.environ.get(variable, "")
    root = Path(base) if os.path.isabs(base) else Path.home() / fallback
    return root / "streamdag"


# streamdag.broker.jars holds the jar list and its version; imported when a default is
# needed, since streamdag.broker imports this module.
def _default_kafka_libs(data: dict[str, Any]) -> Path:
    from streamdag.broker.jars import KAFKA_VERSION

    return Path(data["cache_dir"]) / "kafka" / KAFKA_VERSION


def _default_kafka_repository() -> str:
    from streamdag.broker.jars import MAVEN_CENTRAL

    return MAVEN_CENTRAL


class Settings(BaseSettings):
    """Process-wide settings. Command-line flags override these where both exist."""

    model_config = SettingsConfigDict(env_prefix="STREAMDAG_", extra="ignore")

    bootstrap_servers: str = Field(
        default="localhost:9092", description="Kafka bootstrap servers (host:port,...)."
    )
    cache_dir: Path = Field(
        default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache"),
        description="Per-user cache (Kafka's jars); default $XDG_CACHE_HOME/streamdag, "
        "else ~/.cache/streamdag.",
    )
    state_dir: Path = Field(
        default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state"),
        description="Per-user state (the local broker's data); default "
        "$XDG_STATE_HOME/streamdag, else ~/.local/state/streamdag.",
    )
    kafka_libs: Path = Field(
        default_factory=_default_kafka_libs,
        description="Folder holding the Apache Kafka jars for the local broker; fetched "
        "there at the first `streamdag broker start` (or `broker install`) unless it holds "
        "kafka_2.13-*.jar already. Default <cache_dir>/kafka/<Kafka version>.",
    )
    kafka_repository: str = Field(
        default_factory=_default_kafka_repository,
        description="Maven repository (https:// or file://) Kafka's jars are fetched from.",
    )
    broker_data_dir: Path = Field(
        default_factory=lambda data: data["state_dir"] / "broker",
        description="Data folder of the local broker (KRaft logs, config, pid, log file); "
        "default <state_dir>/broker, the same from every working directory.",
    )
    broker_heap: str = Field(default="512m", description="Java heap (-Xmx) of the local broker.")
    java_home: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("STREAMDAG_JAVA_HOME", "JAVA_HOME"),
        description="Java installation for the local broker (else `java` on PATH).",
    )
    topic_replication_factor: int = Field(
        default=-1,
        description="Replication factor of the topics streamdag creates; -1: the cluster's "
        "own default.replication.factor.",
    )
    log_level: str = Field(default="INFO", description="Log level of streamdag's loggers.")
    log_format: str = Field(
        default="text", pattern="^(text|json)$", description="Log lines as text or JSON."
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/gRPC endpoint (host:port) to export traces to; unset: tracing off.",
    )
    serve_host: str = Field(
        default="127.0.0.1",
        description="Address `streamdag serve` binds its REST and gRPC ports to "
        "(0.0.0.0 to accept remote callers).",
    )
    serve_max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1,
        description="Largest REST body or gRPC message `streamdag serve` accepts (413 / "
        "RESOURCE_EXHAUSTED beyond it).",
    )
    serve_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a REST caller has to send a request's headers, from the "
        "connection or the request's first byte (then 408 and the connection is closed).",
    )
    serve_max_header_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        description="Largest request line and headers of a REST request (431 beyond it).",
    )
    serve_shutdown_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="Seconds `streamdag serve` lets requests in flight finish on SIGTERM.",
    )
    serve_allow_repository_changes: bool = Field(
        default=False,
        description="Let `streamdag serve` load and unload models through the repository "
        "extension (POST /v2/repository/models/<m>/load|unload); refused with 403 otherwise.",
    )
    serve_auth_tokens: Path | None = Field(
        default=None,
        description="File of named bearer tokens (`name: token` per line) that `streamdag "
        "serve` accepts; unset: the server accepts anyone.",
    )
    serve_open_metrics: bool = Field(
        default=False,
        description="Serve /metrics without a token when `streamdag serve` checks tokens.",
    )
    serve_open_docs: bool = Field(
        default=False,
        description="Serve the REST door's OpenAPI document (/openapi.json) and its docs page "
        "(/docs) without a token when `streamdag serve` checks tokens.",
    )
    serve_open_ui: bool = Field(
        default=False,
        description="Serve the web view (/ui) without a token when `streamdag serve` checks "
        "tokens.",
    )
    serve_ui_show_values: bool = Field(
        default=False,
        description="Let the web view of `streamdag serve` show tensors' values when a "
        "viewer asks (its 'show values' switch); otherwise only datatype, shape and digest.",
    )
    serve_tls_cert: Path | None = Field(
        default=None,
        description="PEM certificate (chain) `streamdag serve` presents on both ports; "
        "with serve_tls_key.",
    )
    serve_tls_key: Path | None = Field(
        default=None, description="Unencrypted PEM private key of serve_tls_cert."
    )
    serve_tls_client_ca: Path | None = Field(
        default=None,
        description="PEM CA certificates: `streamdag serve` then requires a client "
        "certificate signed by one of them (mutual TLS) on both ports.",
    )
    payload_store: str | None = Field(
        default=None,
        description="URL of the payload store (file:///dir, s3://bucket/prefix, gs://...) "
        "that carries records over payload_inline_max_bytes; unset: no store, such "
        "requests are refused at the door and such results fail.",
    )
    payload_inline_max_bytes: int = Field(
        default=900_000,
        ge=1024,
        description="Records larger than this go to the payload store, with a stub in Kafka.",
    )
    payload_retention_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="Seconds payload-store objects are kept at least; never less than the "
        "longest retention.ms of the streamdag.* topics.",
    )
    payload_read_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a read of one payload-store object may take; a slower read "
        "fails its request with data_loss instead of holding the worker.",
    )
    token: SecretStr | None = Field(
        default=None,
        description="Bearer token `streamdag infer` sends (as --token).",
    )
    redact_headers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Header name patterns (comma-separated globs, any case) whose values "
        "`inspect`, `errors` and the web view show as [redacted], besides "
        "streamdag.observability.redact.DEFAULT_PATTERNS.",
    )

    @field_validator("redact_headers", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("topic_replication_factor")
    @classmethod
    def _replicas(cls, value: int) -> int:
        return check_replication_factor(value)


def check_replication_factor(value: int) -> int:
    """``value`` if it is -1 (the cluster's default) or 1 or more; else ``ValueError``."""
    if value == 0 or value < -1:
        raise ValueError("-1 (the cluster's default) or a number of replicas, 1 or more")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


# STREAMDAG_KAFKA_<PROPERTY>: one librdkafka property each (dots as underscores).
KAFKA_PREFIX = "STREAMDAG_KAFKA_"


def kafka_environment() -> dict[str, str]:
    """The environment's ``STREAMDAG_KAFKA_*`` variables, but those that are settings of
    their own (``STREAMDAG_KAFKA_LIBS``), by variable name."""
    own = {f"STREAMDAG_{name}".upper() for name in Settings.model_fields}
    return {
        name: value
        for name, value in os.environ.items()
        if name.upper().startswith(KAFKA_PREFIX) and name.upper() not in own
    }
