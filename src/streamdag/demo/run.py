"""`streamdag demo`: a local broker, the quickstart pipeline's workers, N documents through
it, a results table and a summary; everything it started is stopped at the end."""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, Producer

from streamdag.broker import LocalBroker, free_port
from streamdag.engine import PipelineRunner
from streamdag.kafka import consumer_config, producer_config
from streamdag.kafka.headers import ERROR, get_header
from streamdag.pipeline import inputs_topic, load_spec, outputs_topic
from streamdag.protocol import decode_response, encode_request, response_from_bytes
from streamdag.settings import get_settings

__all__ = ["DemoReport", "run_demo"]

SPEC = Path(__file__).with_name("quickstart.yaml")

_FINDINGS = [
    "chest pain",
    "shortness of breath",
    "syncope",
    "bleeding",
    "mild headache",
    "fatigue",
    "cough",
    "back pain",
]
_FRAMES = [
    "Patient reports {f}.",
    "Patient denies {f}.",
    "History of {f}, now resolved.",
    "Presents with {f} since yesterday.",
    "No {f} at this time.",
]


def documents(n: int, seed: int = 7) -> list[str]:
    """Deterministic synthetic clinical sentences."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(_FRAMES).format(f=rng.choice(_FINDINGS)) for _ in range(3))
        for _ in range(n)
    ]


@dataclass
class DemoReport:
    sent: int
    received: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    rows: list[tuple[str, str, float, str]]

    @property
    def docs_per_s(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]


@contextmanager
def _broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    settings = get_settings()
    with tempfile.TemporaryDirectory(prefix="streamdag-demo-") as data:
        broker = LocalBroker(Path(data), libs_dir=settings.kafka_libs, java_home=settings.java_home)
        print("starting a local Kafka broker ...", file=sys.stderr)
        info = broker.start(port=free_port())
        print(f"broker ready at {info.bootstrap}", file=sys.stderr)
        try:
            yield info.bootstrap
        finally:
            broker.stop()


@contextmanager
def _workers(runner: PipelineRunner) -> Iterator[None]:
    failure: list[BaseException] = []

    def target() -> None:
        try:
            runner.run()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="demo-workers", daemon=True)
    thread.start()
    try:
        yield
    finally:
        runner.stop()
        thread.join(60)
    if failure:
        raise failure[0]


def run_demo(n: int = 200, bootstrap: str | None = None) -> DemoReport:
    spec = load_spec(SPEC)
    # A fresh pipeline name per run keeps topics and consumer groups of earlier runs apart.
    spec = spec.model_copy(update={"name": f"quickstart-{uuid.uuid4().hex[:6]}"})
    with _broker(bootstrap) as servers:
        runner = PipelineRunner(spec, servers)
        with _workers(runner):
            return _drive(spec.name, servers, documents(n))


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(
            f"\r  {done}/{total} documents done", end="\n" if done == total else "", file=sys.stderr
        )
    elif done == total or done % max(1, total // 10) == 0:
        print(f"  {done}/{total} documents done", file=sys.stderr)


def _warm_up(pipeline: str, producer: Producer, consumer: Consumer) -> None:
    """One request through first, so the figures measure the pipeline, not group joins."""
    request = encode_request(pipeline, {"text": np.array([b"warm up"], dtype=object)}, id="warm")
    producer.produce(inputs_topic(pipeline), request.SerializeToString(), b"warm")
    producer.flush(30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None and msg.key() == b"warm":
            return


def _drive(pipeline: str, bootstrap: str, docs: list[str]) -> DemoReport:
    consumer = Consumer(consumer_config(bootstrap, f"demo-reader-{uuid.uuid4().hex}"))
    consumer.subscribe([outputs_topic(pipeline)])
    producer = Producer(producer_config(bootstrap))
    _warm_up(pipeline, producer, consumer)
    sent_at: dict[str, float] = {}
    started = time.perf_counter()
    for i, doc in enumerate(docs):
        rid = f"doc-{i:05d}"
        request = encode_request(pipeline, {"text": np.array([doc.encode()], dtype=object)}, id=rid)
        sent_at[rid] = time.perf_counter()
        producer.produce(inputs_topic(pipeline), request.SerializeToString(), rid.encode())
        producer.poll(0)
    producer.flush(30)
    latencies: list[float] = []
    rows: list[tuple[str, str, float, str]] = []
    errors = 0
    deadline = time.monotonic() + 120
    seen: set[str] = set()
    while len(seen) < len(docs) and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None or msg.error() is not None:
            continue
        rid = (msg.key() or b"").decode()
        if rid in seen or rid not in sent_at:
            continue
        seen.add(rid)
        latencies.append((time.perf_counter() - sent_at[rid]) * 1000)
        if get_header(msg.headers(), ERROR) is not None:
            errors += 1
            continue
        out = decode_response(response_from_bytes(msg.value() or b""))
        doc = docs[int(rid.split("-")[1])]
        rows.append((rid, doc, float(out["score"][0]), out["label"][0].decode()))
        _progress(len(seen), len(docs))
    consumer.close()
    return DemoReport(
        sent=len(docs),
        received=len(seen),
        errors=errors,
        seconds=time.perf_counter() - started,
        latencies_ms=latencies,
        rows=sorted(rows)[:6],
    )
