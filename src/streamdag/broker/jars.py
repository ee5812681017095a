"""Apache Kafka's jars, which the local broker runs: the one list of them, and their fetch
from a Maven repository into a folder.

The list is what Maven resolves for ``org.apache.kafka:kafka_2.13`` (runtime scope) plus a
log4j2 binding for its SLF4J logging. Every jar is checked against the checksum the
repository publishes beside it (``.sha512`` where it has one, else ``.sha1``) before it
takes its name in the folder, so a folder never holds a jar that failed its check, and
two fetches into one folder at once (two terminals, two test processes) only repeat work.
``kafka_2.13`` comes last: a folder holding it holds every jar, which is what the broker's
start tests before launching the JVM.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamdag.errors import KafkaJarCorrupt, KafkaJarsUnreachable

__all__ = [
    "ARTIFACTS",
    "KAFKA_VERSION",
    "MAVEN_CENTRAL",
    "Artifact",
    "has_kafka",
    "install",
    "missing",
]

KAFKA_VERSION = "4.2.0"
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
_LOG4J = "2.24.3"
# Seconds a connection or a read may stall before the fetch counts as failed.
_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Artifact:
    """One jar in a Maven repository."""

    group: str
    name: str
    version: str

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}.jar"

    def url(self, repository: str) -> str:
        path = f"{self.group.replace('.', '/')}/{self.name}/{self.version}/{self.file_name}"
        return f"{repository.rstrip('/')}/{path}"


ARTIFACTS: tuple[Artifact, ...] = (
    Artifact("org.apache.kafka", "kafka-clients", KAFKA_VERSION),
    Artifact("com.github.luben", "zstd-jni", "1.5.6-10"),
    Artifact("at.yawk.lz4", "lz4-java", "1.10.1"),
    Artifact("org.xerial.snappy", "snappy-java", "1.1.10.7"),
    Artifact("org.scala-lang", "scala-library", "2.13.17"),
    Artifact("org.apache.kafka", "kafka-server-common", KAFKA_VERSION),
    Artifact("org.pcollections", "pcollections", "4.0.2"),
    Artifact("org.apache.kafka", "kafka-group-coordinator-api", KAFKA_VERSION),
    Artifact("org.apache.kafka", "kafka-group-coordinator", KAFKA_VERSION),
    Artifact("org.hdrhistogram", "HdrHistogram", "2.2.2"),
    Artifact("com.dynatrace.hash4j", "hash4j", "0.22.0"),
    Artifact("org.apache.kafka", "kafka-transaction-coordinator", KAFKA_VERSION),
    Artifact("org.apache.kafka", "kafka-metadata", KAFKA_VERSION),
    Artifact("org.apache.kafka", "kafka-storage-api", KAFKA_VERSION),
    Artifact("org.apache.kafka", "kafka-tools-api", KAFKA_VERSION),
    Artifact("org.apache.kafka", "kafka-raft", KAFKA_VERSION),
    Artifact("org.apache.kafka", "kafka-storage", KAFKA_VERSION),
    Artifact("com.github.ben-manes.caffeine", "caffeine", "3.2.0"),
    Artifact("org.jspecify", "jspecify", "1.0.0"),
    Artifact("org.apache.kafka", "kafka-server", KAFKA_VERSION),
    Artifact("org.apache.kafka", "kafka-coordinator-common", KAFKA_VERSION),
    Artifact("org.apache.kafka", "kafka-share-coordinator", KAFKA_VERSION),
    Artifact("net.sourceforge.argparse4j", "argparse4j", "0.7.0"),
    Artifact("commons-validator", "commons-validator", "1.10.1"),
    Artifact("commons-beanutils", "commons-beanutils", "1.11.0"),
    Artifact("commons-digester", "commons-digester", "2.1"),
    Artifact("commons-logging", "commons-logging", "1.3.5"),
    Artifact("commons-collections", "commons-collections", "3.2.2"),
    Artifact("com.fasterxml.jackson.core", "jackson-databind", "2.19.2"),
    Artifact("com.fasterxml.jackson.core", "jackson-annotations", "2.19.2"),
    Artifact("com.fasterxml.jackson.core", "jackson-core", "2.19.2"),
    Artifact("com.fasterxml.jackson.dataformat", "jackson-dataformat-csv", "2.19.2"),
    Artifact("com.fasterxml.jackson.datatype", "jackson-datatype-jdk8", "2.19.2"),
    Artifact("com.fasterxml.jackson.dataformat", "jackson-dataformat-yaml", "2.19.2"),
    Artifact("org.yaml", "snakeyaml", "2.4"),
    Artifact("net.sf.jopt-simple", "jopt-simple", "5.0.4"),
    Artifact("org.bitbucket.b_c", "jose4j", "0.9.6"),
    Artifact("com.yammer.metrics", "metrics-core", "2.2.0"),
    Artifact("org.scala-lang", "scala-reflect", "2.13.17"),
    Artifact("com.typesafe.scala-logging", "scala-logging_2.13", "3.9.6"),
    Artifact("com.google.re2j", "re2j", "1.8"),
    Artifact("org.slf4j", "slf4j-api", "2.0.17"),
    Artifact("org.apache.logging.log4j", "log4j-core", _LOG4J),
    Artifact("org.apache.logging.log4j", "log4j-api", _LOG4J),
    Artifact("org.apache.logging.log4j", "log4j-slf4j2-impl", _LOG4J),
    # Last: its presence marks a complete folder (the module docstring).
    Artifact("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
)


def has_kafka(folder: Path) -> bool:
    """Whether ``folder`` holds Kafka's server jar: a complete fetch, or the ``libs`` folder
    of a Kafka download."""
    return any(folder.glob("kafka_2.13-*.jar"))


def missing(folder: Path) -> list[Artifact]:
    """The artifacts of the list not in ``folder``."""
    return [a for a in ARTIFACTS if not (folder / a.file_name).is_file()]


def install(
    folder: Path,
    *,
    repository: str = MAVEN_CENTRAL,
    on_fetched: Callable[[Artifact, int], None] | None = None,
) -> list[Artifact]:
    """Fetch every missing artifact from ``repository`` (an https:// or file:// URL of a
    Maven repository) into ``folder``; return those fetched. ``on_fetched(artifact,
    size)`` is called after each.

    Raises ``KafkaJarsUnreachable`` when the repository cannot be read and
    ``KafkaJarCorrupt`` when a jar does not match its checksum (the jar is not kept).
    """
    todo = missing(folder)
    if not todo:
        return []
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KafkaJarsUnreachable(repository, str(folder), str(exc)) from exc
    for artifact in todo:
        size = _fetch(artifact, folder, repository)
        if on_fetched is not None:
            on_fetched(artifact, size)
    return todo


def _fetch(artifact: Artifact, folder: Path, repository: str) -> int:
    url = artifact.url(repository)
    algorithm, expected = _published_checksum(url, repository, folder)
    digest = hashlib.new(algorithm)
    # A name of its own per process, so two fetches at once never write the same file.
    part = folder / f".{artifact.file_name}.{os.getpid()}.part"
    size = 0
    try:
        with _open(url, repository, folder) as response, part.open("wb") as out:
            while chunk := _read(response, url, repository, folder):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if digest.hexdigest() != expected:
            raise KafkaJarCorrupt(url, algorithm, expected, digest.hexdigest())
        os.replace(part, folder / artifact.file_name)
    finally:
        part.unlink(missing_ok=True)
    return size


def _published_checksum(url: str, repository: str, folder: Path) -> tuple[str, str]:
    """The repository's checksum of ``url``: sha512 where published (newer artifacts),
    else sha1 (every artifact of Maven Central has one)."""
    for algorithm in ("sha512", "sha1"):
        try:
            with _open(f"{url}.{algorithm}", repository, folder, absent_ok=True) as response:
                text = _read(response, url, repository, folder).decode("ascii", "replace")
        except FileNotFoundError:
            continue
        # Some publishers write "<hex>  <file name>"; the hex comes first either way.
        words = text.split()
        if words:
            return algorithm, words[0].lower()
    raise KafkaJarsUnreachable(repository, str(folder), f"no .sha512 or .sha1 beside {url}")


@contextlib.contextmanager
def _open(url: str, repository: str, folder: Path, *, absent_ok: bool = False) -> Iterator[Any]:
    """The response of ``url``; ``FileNotFoundError`` when it is absent and ``absent_ok``,
    ``KafkaJarsUnreachable`` for every other failure."""
    try:
        response = urllib.request.urlopen(url, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if absent_ok and exc.code == 404:
            raise FileNotFoundError(url) from exc
        raise KafkaJarsUnreachable(repository, str(folder), f"HTTP {exc.code} for {url}") from exc
    except urllib.error.URLError as exc:
        # file:// URLs report a missing file as a URLError wrapping the OSError.
        if absent_ok and isinstance(exc.reason, FileNotFoundError):
            raise FileNotFoundError(url) from exc
        raise KafkaJarsUnreachable(repository, str(folder), str(exc.reason)) from exc
    except (OSError, ValueError) as exc:
        raise KafkaJarsUnreachable(repository, str(folder), str(exc)) from exc
    with response:
        yield response


def _read(response: Any, url: str, repository: str, folder: Path) -> bytes:
    try:
        chunk: bytes = response.read(_CHUNK)
    except OSError as exc:  # a reset or a stalled read (TimeoutError) mid-file
        raise KafkaJarsUnreachable(repository, str(folder), f"{url}: {exc}") from exc
    return chunk
