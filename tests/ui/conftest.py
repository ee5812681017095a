"""The running pipeline shared by the web view tests (see ``ui_support``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kafka_support import run_pipeline

from streamdag.broker import BrokerInfo

from .ui_support import LivePipeline, ui_server, write_pipeline


@pytest.fixture(scope="package")
def live_pipeline(
    kafka_broker: BrokerInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LivePipeline]:
    """The pipeline, running, after 12 requests: two failed in ``clean`` (x = 13), and
    three big enough (total > 50) to fire ``review``'s trigger."""
    bootstrap = kafka_broker.bootstrap
    spec = write_pipeline(tmp_path_factory.mktemp("ui"), f"ui-{uuid.uuid4().hex[:8]}")
    with run_pipeline(spec, bootstrap), ui_server(spec, bootstrap) as server:
        live = LivePipeline(spec, server, bootstrap, [], [])
        ok, failed = live.send([1, 2, 13, 30, 3, 4, 13, 40, 5, 6, 7, 50])
        live.ok.extend(ok)
        live.failed.extend(failed)
        yield live
