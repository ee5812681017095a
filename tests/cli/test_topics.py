"""`streamdag topics`: print and create a pipeline's derived topics on the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from streamdag.kafka import TopicSpec, ensure_topics, list_topics

SPEC = """
name: {name}
partitions: 2
models:
  m: {{runtime: python, handler: "handlers:identity"}}
steps:
  - {{name: clean, model: m}}
  - {{name: left, model: m, inputs: [clean.outputs]}}
  - {{name: right, model: m, inputs: [clean.outputs]}}
  - {{name: both, model: m, inputs: [left.outputs, right.outputs], join: outer}}
"""


def _topics(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamdag.cli.main", "topics", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _spec(write_spec: Callable[[str], Path], name: str) -> Path:
    path = write_spec(SPEC.format(name=name))
    (path.parent / "handlers.py").write_text("def identity(x):\n    return x\n")
    return path


def test_prints_derived_topics_without_a_broker(
    write_spec: Callable[[str], Path], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("p")
    result = _topics(str(_spec(write_spec, name)), "--bootstrap", "127.0.0.1:1")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == [
        f"streamdag.{name}.{t}"
        for t in (
            "inputs",
            "clean.outputs",
            "left.outputs",
            "right.outputs",
            # both answers alone (no step reads it): its results go to the outputs topic
            "both.join-state",
            "errors",
            "outputs",
        )
    ]


def test_create_is_idempotent_and_compacts_join_state(
    bootstrap: str, write_spec: Callable[[str], Path], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("p")
    spec = str(_spec(write_spec, name))
    first = _topics(spec, "--create", "--bootstrap", bootstrap)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created") == 7  # both answers alone: no topic of its own
    assert "compacted" in next(ln for ln in first.stdout.splitlines() if "join-state" in ln)
    counts = list_topics(bootstrap)
    assert counts[f"streamdag.{name}.both.join-state"] == 2
    assert counts[f"streamdag.{name}.inputs"] == 2

    second = _topics(spec, "--create", "--bootstrap", bootstrap)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("exists") == 7


def test_existing_topic_with_other_partition_count_is_an_error(
    bootstrap: str, write_spec: Callable[[str], Path], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("p")
    ensure_topics(bootstrap, [TopicSpec(f"streamdag.{name}.inputs", 5)])
    result = _topics(str(_spec(write_spec, name)), "--create", "--bootstrap", bootstrap)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: topic streamdag.{name}.inputs exists with 5 partitions but the pipeline "
        "needs 2; change `partitions` in the spec or recreate the topic"
    )


def test_bad_spec_is_one_line_error(write_spec: Callable[[str], Path]) -> None:
    path = write_spec("name: x\nmodels: {}\nsteps: []\n")
    result = _topics(str(path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {path}: models: ")
    assert result.stderr.strip().count("\n") == 0


@pytest.mark.slow  # waits out the connection timeout
def test_unreachable_broker_is_one_line_error(
    write_spec: Callable[[str], Path], unique_name: Callable[[str], str]
) -> None:
    result = _topics(
        str(_spec(write_spec, unique_name("p"))), "--create", "--bootstrap", "127.0.0.1:1"
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach Kafka at 127.0.0.1:1")


def _replicas(bootstrap: str, topic: str) -> list[int]:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return [len(p.replicas) for p in metadata.topics[topic].partitions.values()]


def test_topics_get_the_cluster_default_replication_unless_told(
    bootstrap: str, write_spec: Callable[[str], Path], unique_name: Callable[[str], str]
) -> None:
    """-1 by default (the cluster's default.replication.factor: 1 on the one-node test
    broker); a factor the cluster cannot hold is refused naming the topic, and nothing of
    the pipeline is half-created with too few replicas."""
    name = unique_name("p")
    spec = str(_spec(write_spec, name))
    refused = _topics(spec, "--create", "--replication-factor", "3", "--bootstrap", bootstrap)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: cannot create topic streamdag.{name}.")
    assert "replication factor" in refused.stderr.lower()
    assert not [t for t in list_topics(bootstrap) if t.startswith(f"streamdag.{name}.")]

    created = _topics(spec, "--create", "--bootstrap", bootstrap)
    assert created.returncode == 0, created.stderr
    assert _replicas(bootstrap, f"streamdag.{name}.inputs") == [1, 1]


def test_the_replication_setting_reaches_every_creator(
    bootstrap: str, write_spec: Callable[[str], Path], unique_name: Callable[[str], str]
) -> None:
    """STREAMDAG_TOPIC_REPLICATION_FACTOR is read by `topics --create` and by the workers,
    which create missing topics when they start."""
    spec = str(_spec(write_spec, unique_name("p")))
    env = {**os.environ, "STREAMDAG_TOPIC_REPLICATION_FACTOR": "3"}
    for command in (["topics", spec, "--create"], ["run", spec]):
        done = subprocess.run(
            [sys.executable, "-m", "streamdag.cli.main", *command, "--bootstrap", bootstrap],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )
        assert done.returncode == 1, command
        assert "replication factor" in done.stderr.lower(), done.stderr


def test_a_replication_factor_of_zero_is_a_usage_error(
    write_spec: Callable[[str], Path], unique_name: Callable[[str], str]
) -> None:
    spec = str(_spec(write_spec, unique_name("p")))
    done = _topics(spec, "--create", "--replication-factor", "0")
    assert done.returncode == 2
    assert "--replication-factor" in done.stderr
