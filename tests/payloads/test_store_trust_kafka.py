"""The payload store trusts no record, through a real broker: a forged ``streamdag-payload``
that names a file through a symbolic link, a FIFO or a malformed reference fails its own
request with ``data_loss`` at once, telling nothing about the file, and the requests after
it on the partition are answered; ``streamdag errors`` shows such a failure without
hanging; a store emptied under a running gateway and its workers takes the next large
request."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from confluent_kafka import Producer
from kafka_support import read_results, run_pipeline, send_requests
from server_support import running_server

from streamdag.kafka import ensure_topics, producer_config
from streamdag.kafka.headers import PAYLOAD
from streamdag.payloads import PayloadRef, PayloadStore
from streamdag.pipeline import compile_plan, derive_topics, load_spec
from streamdag.protocol import encode_request
from streamdag.serving import KafkaGateway

pytestmark = pytest.mark.kafka

SPEC = """
name: "{name}"
partitions: 1
timeout_ms: 60000
models:
  double: {runtime: python, handler: "claim_models:double"}
steps:
  - {name: double, model: double}
"""

# This hour's folder: a worker's sweep at start drops older ones.
HOUR = time.strftime("%Y%m%d%H", time.gmtime())
X = np.arange(1_250_000, dtype=np.float32).reshape(1, -1) / 1000  # 5 MB of FP32


@pytest.fixture
def spec_path(tmp_path: Path, unique_name: Callable[[str], str]) -> Path:
    shutil.copy(Path(__file__).with_name("claim_models.py"), tmp_path / "claim_models.py")
    path = tmp_path / "pipeline.yaml"
    path.write_text(SPEC.replace("{name}", unique_name("trust")))
    return path


@pytest.fixture
def store(tmp_path: Path) -> PayloadStore:
    (tmp_path / "payloads" / HOUR).mkdir(parents=True)
    return PayloadStore(f"file://{tmp_path}/payloads")


def forge(bootstrap: str, spec_path: Path, headers: dict[str, bytes]) -> None:
    """Produce to the pipeline's inputs topic, per request id, a stub whose
    ``streamdag-payload`` is the given header value: what anyone who may write records
    can send."""
    spec = load_spec(spec_path)
    ensure_topics(bootstrap, derive_topics(spec))
    producer = Producer(producer_config(bootstrap))
    for rid, header in headers.items():
        producer.produce(
            f"streamdag.{spec.name}.inputs",
            b"forged stub",
            rid.encode(),
            headers=[(PAYLOAD, header)],
        )
    assert producer.flush(30) == 0


def naming(url: str, data: bytes) -> bytes:
    """A header naming ``url`` with the size and SHA-256 of ``data``."""
    return PayloadRef(url, len(data), hashlib.sha256(data).hexdigest()).encode()


def test_a_record_cannot_read_a_file_through_a_link_in_the_store(
    bootstrap: str, spec_path: Path, store: PayloadStore, tmp_path: Path
) -> None:
    spec = load_spec(spec_path)
    # A file outside the store that a worker would answer if it read it: a valid request.
    secret = encode_request(spec.name, {"x": np.ones((1, 4), np.float32)}).SerializeToString()
    (tmp_path / "secret").write_bytes(secret)
    digest = hashlib.sha256(secret).hexdigest()
    root = Path(store.root)
    (root / "evil").symlink_to("/")
    (root / HOUR / f"leak-{digest[:16]}").symlink_to(tmp_path / "secret")
    forge(
        bootstrap,
        spec_path,
        {
            "via-evil": naming(f"{store.url}/evil{tmp_path}/secret", secret),
            "via-link": naming(f"{store.url}/{HOUR}/leak-{digest[:16]}", secret),
            "guess": PayloadRef(f"{store.url}/evil{tmp_path}/secret", 1, "0" * 64).encode(),
        },
    )
    with run_pipeline(spec, bootstrap, payloads=store):
        results = {
            r.request_id: r
            for r in read_results(bootstrap, spec.name, keys=["via-evil", "via-link", "guess"])
        }
    for rid, problem in (
        ("via-evil", "is not in the payload store"),
        ("via-link", "is a symbolic link"),
        ("guess", "is not in the payload store"),
    ):
        error = results[rid].error
        assert error is not None, f"{rid}: answered from a file outside the store"
        assert error.code == "data_loss" and problem in error.message
        # Nothing about the file: not its size, not its digest.
        assert f"{len(secret):,} bytes" not in error.message
        assert f"SHA-256 {digest[:16]}" not in error.message


def release(fifo: Path) -> None:
    """Give end-of-file to whoever is blocked opening ``fifo`` for reading."""
    for _ in range(5):
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader waits
                raise


def test_a_fifo_fails_its_request_and_neither_the_step_nor_errors_hangs(
    bootstrap: str, spec_path: Path, store: PayloadStore
) -> None:
    spec = load_spec(spec_path)
    digest = hashlib.sha256(b"x").hexdigest()
    fifo = Path(store.root) / HOUR / f"fifo-{digest[:16]}"
    os.mkfifo(fifo)
    forge(bootstrap, spec_path, {"fifo": naming(f"{store.url}/{HOUR}/fifo-{digest[:16]}", b"x")})
    send_requests(bootstrap, spec.name, [("after", {"x": np.ones((1, 4), np.float32)})])
    try:
        with run_pipeline(spec, bootstrap, payloads=store):
            try:
                results = {
                    r.request_id: r
                    for r in read_results(bootstrap, spec.name, keys=["fifo", "after"])
                }
            finally:
                release(fifo)
        assert set(results) == {"fifo", "after"}, "the step hung on the FIFO"
        error = results["fifo"].error
        assert error is not None and error.code == "data_loss"
        assert "is not a regular file" in error.message
        np.testing.assert_array_equal(results["after"].arrays["y"], np.full((1, 4), 2.0))
        # The errors command reads the failed record's stub from the store too.
        shown = subprocess.run(
            [
                *(sys.executable, "-m", "streamdag.cli.main", "errors", str(spec_path)),
                *("--bootstrap", bootstrap, "--payload-store", store.url),
                *("--request-id", "fifo", "--json"),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=spec_path.parent,
        )
    finally:
        release(fifo)
    assert shown.returncode == 0, shown.stderr
    assert "is not a regular file" in shown.stdout


def test_a_malformed_reference_is_data_loss(
    bootstrap: str, spec_path: Path, store: PayloadStore
) -> None:
    spec = load_spec(spec_path)
    sha = "0" * 64
    forge(
        bootstrap,
        spec_path,
        {
            "nul": naming(f"{store.url}/{HOUR}/a\0b-{sha[:16]}", b"x"),
            "huge": f'{{"url": "{store.url}/{HOUR}/a-{sha[:16]}", "size": 1e400, '
            f'"sha256": "{sha}"}}'.encode(),
        },
    )
    with run_pipeline(spec, bootstrap, payloads=store):
        results = {
            r.request_id: r for r in read_results(bootstrap, spec.name, keys=["nul", "huge"])
        }
    errors = {rid: results[rid].error for rid in ("nul", "huge")}
    assert {rid: e.code if e else None for rid, e in errors.items()} == {
        "nul": "data_loss",
        "huge": "data_loss",
    }, errors
    for error in errors.values():
        assert error is not None and "header streamdag-payload names no object" in error.message


def test_a_store_emptied_under_a_running_pipeline_takes_the_next_large_request(
    bootstrap: str, spec_path: Path, store: PayloadStore
) -> None:
    spec = load_spec(spec_path)
    gateway = KafkaGateway([compile_plan(spec)], bootstrap, payloads=store)
    root = Path(store.root)
    answers = {}
    with (
        run_pipeline(spec, bootstrap, payloads=store),
        running_server([spec], gateway=gateway) as server,
    ):
        http = triton_http.InferenceServerClient(
            f"127.0.0.1:{server.http_port}", network_timeout=90
        )
        for rid in ("first", "second"):
            if rid == "second":
                # The store's folder replaced by an empty one, as by an operator; the
                # gateway and the worker each made this hour's folder for the first.
                shutil.rmtree(root)
                root.mkdir()
            x = triton_http.InferInput("x", list(X.shape), "FP32")
            x.set_data_from_numpy(X)
            answers[rid] = http.infer(spec.name, [x], request_id=rid).as_numpy("y")
        http.close()
    for y in answers.values():
        np.testing.assert_array_equal(y, X * 2)
