"""A model wedged for good: its worker process leaves the group and exits non-zero (for its
supervisor to replace), and the batch it held is redone elsewhere, exactly once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kafka_support import count_by_id, read_results, send_requests

from streamdag.kafka import ensure_topics
from streamdag.pipeline import derive_topics, load_spec

pytestmark = pytest.mark.slow

HUNG = """
name: "{name}"
guarantee: exactly_once
partitions: 2
retry: {max_attempts: 3, backoff_ms: 10}
models:
  m:
    runtime: python
    handler: "linear_models:hangs_when_told"
    outputs: [y]
    timeout_ms: 300
    batch: {max_size: 64, max_wait_ms: 20}
steps:
  - {name: score, model: m}
"""


def test_a_worker_whose_model_hangs_exits_and_its_batch_is_redone_once(
    bootstrap: str, pipeline_spec: Callable[[str], Path], workers: Callable
) -> None:
    path = pipeline_spec(HUNG)
    spec = load_spec(path)
    ensure_topics(bootstrap, derive_topics(spec))
    requests = [(f"h{i}", {"x": np.array([i], dtype=np.int64)}) for i in range(200)]
    send_requests(bootstrap, spec.name, requests)
    w = workers(path)

    wedged = w.start(env={"HANG_FOR_TEST": "1"})
    assert wedged.wait(60) != 0  # its hung calls are left behind; the process still ends
    log = w.log_of(wedged)
    assert "still running long past their 0.3s timeout" in log
    assert "worker stop" in log  # it closed its consumer: left the group, not timed out
    # Nothing it worked on was committed: no result and no deadline_exceeded error.
    assert read_results(bootstrap, spec.name, until=1, timeout=3) == []

    healthy = w.start()
    results = read_results(bootstrap, spec.name, until=len(requests), timeout=90, settle=1.0)
    assert count_by_id(results) == {rid: 1 for rid, _ in requests}
    assert all(r.error is None for r in results)
    for r in results:
        assert r.arrays["y"].tolist() == [2 * int(r.request_id[1:])]
    assert w.terminate(healthy) == 0
