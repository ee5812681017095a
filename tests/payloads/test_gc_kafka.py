"""`streamdag payloads gc` against the real broker: objects older than the retention go,
never while a topic's retention.ms could still hold a record that names them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streamdag.cli.main import main
from streamdag.errors import PayloadLost
from streamdag.kafka import TopicSpec, admin_config, ensure_topics, list_topics
from streamdag.payloads import PayloadStore, effective_retention_s

pytestmark = pytest.mark.kafka

DAY = 86_400.0


@contextmanager
def topic(bootstrap: str, name: str, config: dict[str, str]) -> Iterator[None]:
    ensure_topics(bootstrap, [TopicSpec(name, 1, config=config)])
    deadline = time.monotonic() + 30
    while name not in list_topics(bootstrap) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        yield
    finally:
        admin = AdminClient(admin_config(bootstrap))
        for future in admin.delete_topics([name]).values():
            future.result(30)


def test_gc_keeps_objects_as_long_as_the_topics_keep_records(
    bootstrap: str,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with topic(bootstrap, f"streamdag.{unique_name('week')}.inputs", {"retention.ms": "604800000"}):
        gc_against_a_week_of_topic_retention(bootstrap, tmp_path, capsys)


def gc_against_a_week_of_topic_retention(
    bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = PayloadStore(f"file://{tmp_path}", retention_s=3600)
    now = time.time()
    topics_keep = effective_retention_s(store, bootstrap)
    assert topics_keep is not None and topics_keep >= 7 * DAY  # the topic's retention.ms
    young = store.put("young", b"y", now=now - 2 * 3600)
    old = store.put("old", b"o", now=now - topics_keep - 2 * 3600)
    # --older-than 1h asks for less than the topics keep records: the topics win.
    argv = ["payloads", "gc", "--payload-store", store.url, "--older-than", "1h", "-b", bootstrap]
    assert main([*argv, "--dry-run"]) == 0
    assert "would remove 1 hour(s)" in capsys.readouterr().out
    assert store.claim(old.encode()) == b"o"
    assert main(argv) == 0
    assert f"removed 1 hour(s)\n  {old.url.rsplit('/', 1)[0]}" in capsys.readouterr().out
    with pytest.raises(PayloadLost, match="is missing"):
        store.claim(old.encode())
    assert store.claim(young.encode()) == b"y"


def test_gc_deletes_nothing_while_a_topic_keeps_records_forever(
    bootstrap: str,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = PayloadStore(f"file://{tmp_path}")
    ancient = store.put("ancient", b"a", now=time.time() - 400 * DAY)
    with topic(bootstrap, f"streamdag.{unique_name('forever')}.inputs", {"retention.ms": "-1"}):
        argv = ["payloads", "gc", "--payload-store", store.url, "-b", bootstrap]
        assert main(argv) == 0
        assert "keeps its records forever; nothing deleted" in capsys.readouterr().out
        assert store.claim(ancient.encode()) == b"a"
