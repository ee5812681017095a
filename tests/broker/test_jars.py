"""Kafka's jars: fetched from a Maven repository, each checked against the checksum the
repository publishes; a failed check keeps nothing, an unreachable repository says in one
line what to download and where to put it. The repositories here are file:// folders."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamdag.broker import jars
from streamdag.broker.jars import Artifact
from streamdag.errors import KafkaJarCorrupt, KafkaJarsUnreachable
from streamdag.settings import Settings

SMALL = (
    Artifact("org.example", "new-lib", "1.0"),  # publishes .sha512 and .sha1
    Artifact("org.example.old", "old-lib", "2.1"),  # publishes .sha1 only
    Artifact("org.apache.kafka", "kafka_2.13", jars.KAFKA_VERSION),
)


def publish(repository: Path, artifact: Artifact, content: bytes, *, sha512: bool) -> Path:
    jar = repository / artifact.url("x").removeprefix("x/")
    jar.parent.mkdir(parents=True, exist_ok=True)
    jar.write_bytes(content)
    # As some publishers write it: the digest, two spaces, the file name.
    jar.with_name(jar.name + ".sha1").write_text(
        f"{hashlib.sha1(content).hexdigest()}  {jar.name}\n"
    )
    if sha512:
        jar.with_name(jar.name + ".sha512").write_text(hashlib.sha512(content).hexdigest())
    return jar


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(jars, "ARTIFACTS", SMALL)
    root = tmp_path / "m2"
    for i, artifact in enumerate(SMALL):
        publish(root, artifact, f"jar {i}".encode() * 1000, sha512=artifact.name != "old-lib")
    return root


def test_the_list_is_maven_s_resolution_of_kafka_with_kafka_last() -> None:
    names = [a.file_name for a in jars.ARTIFACTS]
    assert len(names) == len(set(names)) == 46
    assert names[-1] == f"kafka_2.13-{jars.KAFKA_VERSION}.jar"
    assert {"kafka-server-4.2.0.jar", "log4j-slf4j2-impl-2.24.3.jar"} <= set(names)
    assert jars.ARTIFACTS[0].url(jars.MAVEN_CENTRAL) == (
        "https://repo.maven.apache.org/maven2/org/apache/kafka/kafka-clients/4.2.0/"
        "kafka-clients-4.2.0.jar"
    )


def test_jars_are_fetched_once_and_checked_by_sha512_or_else_sha1(
    repository: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "libs"
    seen: list[tuple[str, int]] = []
    fetched = jars.install(
        folder, repository=repository.as_uri(), on_fetched=lambda a, n: seen.append((a.name, n))
    )
    assert fetched == list(SMALL)
    assert seen == [(a.name, 5000) for a in SMALL]
    assert sorted(p.name for p in folder.iterdir()) == sorted(a.file_name for a in SMALL)
    assert jars.has_kafka(folder) and jars.missing(folder) == []
    assert jars.install(folder, repository=repository.as_uri()) == []


def test_a_jar_that_fails_its_checksum_is_not_kept(repository: Path, tmp_path: Path) -> None:
    jar = repository / SMALL[1].url("x").removeprefix("x/")
    jar.write_bytes(b"tampered")
    folder = tmp_path / "libs"
    with pytest.raises(
        KafkaJarCorrupt, match=r"old-lib-2\.1\.jar does not match its published sha1"
    ):
        jars.install(folder, repository=repository.as_uri())
    # The jar before it stays; the bad one and any partial file are gone; Kafka's server
    # jar, which marks a complete folder, was never reached.
    assert [p.name for p in folder.iterdir()] == [SMALL[0].file_name]
    assert not jars.has_kafka(folder)


def test_an_artifact_without_a_published_checksum_is_refused(
    repository: Path, tmp_path: Path
) -> None:
    jar = repository / SMALL[0].url("x").removeprefix("x/")
    for suffix in (".sha1", ".sha512"):
        jar.with_name(jar.name + suffix).unlink()
    with pytest.raises(KafkaJarsUnreachable, match=r"no \.sha512 or \.sha1 beside"):
        jars.install(tmp_path / "libs", repository=repository.as_uri())


def test_an_unreachable_repository_says_what_to_download_and_where(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    env = {
        **os.environ,
        "STREAMDAG_KAFKA_LIBS": str(libs),
        # Nothing listens on port 9 of this host: refused at once, as offline.
        "STREAMDAG_KAFKA_REPOSITORY": "http://127.0.0.1:9/maven2",
        "STREAMDAG_BROKER_DATA_DIR": str(tmp_path / "data"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "streamdag.cli.main", "broker", "start"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot fetch Kafka's jars from http://127.0.0.1:9/maven2 (")
    assert f"`streamdag broker install --urls` lists and put them in {libs}," in last
    assert not (tmp_path / "data").exists()

    listed = subprocess.run(
        [sys.executable, "-m", "streamdag.cli.main", "broker", "install", "--urls"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    ).stdout.split()
    assert listed == [a.url("http://127.0.0.1:9/maven2") for a in jars.ARTIFACTS]


def test_jars_and_broker_data_are_per_user_wherever_the_command_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("STREAMDAG_KAFKA_LIBS", "STREAMDAG_BROKER_DATA_DIR", "STREAMDAG_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("STREAMDAG_STATE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/ignored")
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    home = tmp_path / "home"
    assert settings.kafka_libs == home / ".cache/streamdag/kafka" / jars.KAFKA_VERSION
    assert settings.broker_data_dir == home / ".local/state/streamdag/broker"

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("STREAMDAG_STATE_DIR", str(tmp_path / "state"))
    settings = Settings()
    assert settings.kafka_libs == tmp_path / "xdg-cache/streamdag/kafka" / jars.KAFKA_VERSION
    assert settings.broker_data_dir == tmp_path / "state/broker"
