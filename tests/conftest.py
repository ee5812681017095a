"""Shared fixtures: one real Kafka broker per test session, and factories for unique names.

The broker is started by the project's own launcher on a free port and stopped at the end
of the session whatever the outcome. Tests that use it are marked ``kafka``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka_support import Workers

from streamdag.broker import BrokerInfo, LocalBroker, free_port
from streamdag.kafka import TopicSpec, ensure_topics
from streamdag.settings import get_settings

# The longest files, each minutes of broker kills and restarts: run first, one to each
# test process (`make test` hands out whole files), so that neither process is left
# running one of them alone at the end while the other idles.
LONGEST_FIRST = ("engine/test_cluster_chaos_kafka.py", "engine/test_chaos_kafka.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)

    def rank(item: pytest.Item) -> int:
        path = item.path.as_posix()
        return next((i for i, f in enumerate(LONGEST_FIRST) if path.endswith(f)), 2)

    items.sort(key=rank)  # stable: every file keeps its own order


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerInfo]:
    settings = get_settings()
    broker = LocalBroker(
        tmp_path_factory.mktemp("kafka"), libs_dir=settings.kafka_libs, heap="768m"
    )
    info = broker.start(port=free_port(), timeout=90)
    try:
        yield info
    finally:
        broker.stop()


@pytest.fixture
def bootstrap(kafka_broker: BrokerInfo) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name("p")`` -> ``p-<test>-<random>``: a fresh pipeline or topic name."""
    base = request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:30]

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{base}-{uuid.uuid4().hex[:8]}".lower()

    return make


@pytest.fixture
def topic_factory(bootstrap: str, unique_name: Callable[[str], str]) -> Callable[..., str]:
    """Create a fresh topic on the session broker and return its name."""

    def make(partitions: int = 1, *, compacted: bool = False) -> str:
        name = unique_name("topic")
        ensure_topics(bootstrap, [TopicSpec(name, partitions, compacted=compacted)])
        return name

    return make


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[[str], Path]:
    """Write a pipeline spec (YAML text) to a file in a fresh folder; return its path."""

    def make(text: str, name: str = "pipeline.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return make


@pytest.fixture
def workers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Workers]]:
    """``workers(spec_path[, bootstrap])``: `streamdag run` processes of that pipeline on the
    session broker (or the cluster at ``bootstrap``), each killed at the end of the test if
    still running; logs in the test's folder."""
    made: list[Workers] = []

    def make(spec: Path, bootstrap: str | None = None) -> Workers:
        logs = tmp_path / "worker-logs"
        logs.mkdir(exist_ok=True)
        w = Workers(spec, bootstrap or request.getfixturevalue("bootstrap"), logs)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop_all()
