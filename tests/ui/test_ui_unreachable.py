"""The web view when Kafka cannot be reached: clear 503 answers, never a hang or a 500;
the graph, which needs no Kafka, still answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from server_support import running_server

from streamdag.settings import get_settings

from .ui_support import write_pipeline

# Waits out Kafka's connection timeouts: slow for `make test-fast`.
pytestmark = pytest.mark.slow


def test_figures_say_kafka_is_out_of_reach(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMDAG_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    get_settings.cache_clear()
    try:
        with running_server([write_pipeline(tmp_path, "ui-offline")]) as server:
            base = f"http://127.0.0.1:{server.http_port}/ui/api/pipelines/ui-offline"
            stats = httpx.get(f"{base}/stats", timeout=60)
            search = httpx.get(f"{base}/requests/r1", timeout=60)
            graph = httpx.get(f"{base}/graph", timeout=60)
    finally:
        get_settings.cache_clear()
    assert stats.status_code == 503
    assert "ui-offline" in stats.json()["error"] and "127.0.0.1:1" in stats.json()["error"]
    assert search.status_code == 503
    assert "127.0.0.1:1" in search.json()["error"]
    assert graph.status_code == 200
    assert [n["id"] for n in graph.json()["nodes"]][:2] == ["inputs", "clean"]
