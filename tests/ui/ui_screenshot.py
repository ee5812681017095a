"""Take docs/img/ui.png: the web view over the demo's medical-records pipeline under load.

    .venv/bin/python tests/ui/ui_screenshot.py [--out docs/img/ui.png] [--bootstrap H:P]

Starts a local broker in a temporary folder (unless ``--bootstrap`` is given), the
pipeline's workers in this process, and a server with its gateway and web view; sends the
demo's notes through REST and gRPC while a few undecodable records go straight to the
inputs topic (so the errors panel has something to show), then shoots the page with a
request search open. Not a test: run it by hand when the page changes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from confluent_kafka import Producer

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

from browser import screenshot  # noqa: E402
from kafka_support import run_pipeline  # noqa: E402
from ui_support import ui_server  # noqa: E402

from streamdag.broker import LocalBroker, free_port  # noqa: E402
from streamdag.demo.example import MedicalRecords  # noqa: E402
from streamdag.demo.load import Doors, send  # noqa: E402
from streamdag.pipeline import inputs_topic, load_spec  # noqa: E402
from streamdag.settings import get_settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap is not None:
        yield bootstrap
        return
    with tempfile.TemporaryDirectory(prefix="streamdag-shot-") as folder:
        local = LocalBroker(Path(folder), libs_dir=get_settings().kafka_libs)
        info = local.start(port=free_port(), timeout=90)
        try:
            yield info.bootstrap
        finally:
            local.stop()


def poison(bootstrap: str, pipeline: str, count: int) -> None:
    """Records no step can decode: each fails in ``normalize`` and lands on the errors topic."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        key = f"note-garbled-{i}".encode()
        producer.produce(inputs_topic(pipeline), b"\x00garbled note", key)
    producer.flush(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "ui.png")
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()

    example = MedicalRecords()
    example.ensure_models()
    spec = load_spec(example.spec_path)
    docs = example.documents(400)
    with ExitStack() as stack:
        bootstrap = stack.enter_context(broker(args.bootstrap))
        stack.enter_context(run_pipeline(spec, bootstrap))
        server = stack.enter_context(ui_server(spec, bootstrap))
        doors = Doors(f"127.0.0.1:{server.http_port}", f"127.0.0.1:{server.grpc_port}", spec.name)
        asyncio.run(send(doors, docs[:40], concurrency=4))  # warm up: groups, models, joins
        poison(bootstrap, spec.name, 3)

        stop = threading.Event()

        def load() -> None:
            batch = 0
            while not stop.is_set():
                chunk = docs[40 + (batch % 9) * 40 : 80 + (batch % 9) * 40]
                asyncio.run(send(doors, chunk, concurrency=3))
                batch += 1

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        stats = f"http://{doors.http}/ui/api/pipelines/{spec.name}/stats"
        for _ in range(4):  # rates need a few snapshots
            httpx.get(stats, timeout=60).raise_for_status()
            time.sleep(2)
        url = f"http://{doors.http}/ui/?pipeline={spec.name}&request={docs[7].id}"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(url, args.out, budget_ms=6_000)
        stop.set()
        loader.join(120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
