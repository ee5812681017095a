"""Request searches of the web view read Kafka in threads of their own: many of them at
once never hold up the models the same server serves, and past a short queue they are
turned away with 503 and a Retry-After."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer
from server_support import running_server

from streamdag.kafka import ensure_topics, producer_config
from streamdag.pipeline import derive_topics, inputs_topic

from .ui_support import write_pipeline

pytestmark = pytest.mark.kafka

FILLER = 480_000  # records on the inputs topic: a search reads a third, in about 0.7 s
SEARCHES = 30


def fill(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 50}))
    value = b"v" * 40
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value, f"fill-{i}".encode())
                break
            except BufferError:
                producer.poll(0.1)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


BODY = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}


def infer_seconds(client: httpx.Client) -> float:
    start = time.monotonic()
    response = client.post("/v2/models/clean/infer", json=BODY)
    assert response.status_code == 200, response.text
    return time.monotonic() - start


def test_searches_never_hold_up_inference(
    bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    spec = write_pipeline(tmp_path, unique_name("ui"))
    ensure_topics(bootstrap, derive_topics(spec))
    fill(bootstrap, inputs_topic(spec.name), FILLER)
    with (
        running_server([spec], kafka=bootstrap) as server,
        # Clients made beforehand: making thirty of them at once takes this process's CPU.
        httpx.Client(
            base_url=f"http://127.0.0.1:{server.http_port}/ui/api/pipelines/{spec.name}",
            limits=httpx.Limits(max_connections=SEARCHES),
            timeout=120,
        ) as searcher,
        httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=120) as inferrer,
        ThreadPoolExecutor(SEARCHES) as clients,
    ):

        def find(rid: str) -> httpx.Response:
            return searcher.get(f"/requests/{rid}")

        infer_seconds(inferrer)  # the first call pays for the connection and the model's start
        start = time.monotonic()
        assert find("alone").status_code == 404
        alone = time.monotonic() - start
        searches = [clients.submit(find, f"s{i}-{uuid.uuid4().hex}") for i in range(SEARCHES)]
        time.sleep(alone / 3)  # they have reached the server and started reading
        during = sorted(infer_seconds(inferrer) for _ in range(5))
        in_flight = sum(not s.done() for s in searches)
        answers = [s.result() for s in searches]
    # The view's threads ended with their reads: nothing is left running.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        t.name.startswith("streamdag-ui-") for t in threading.enumerate()
    ):
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("streamdag-ui-")]
    assert in_flight > 0, "the searches ended before the inferences: make them longer"
    # An inference takes milliseconds; queued behind the searches every one would wait for
    # seconds. The searches' Python work shares the interpreter with the door, so on a busy
    # machine one call can be slowed: the median tells a queue from a slow call.
    assert during[len(during) // 2] < alone / 2, (during, alone)
    statuses = sorted({r.status_code for r in answers})
    assert statuses in ([404], [404, 503]), [r.text for r in answers]
    busy = [r for r in answers if r.status_code == 503]
    assert len(busy) < SEARCHES - 2
    for response in busy:
        assert response.headers["retry-after"].isdigit()
        assert "busy" in response.json()["error"]
