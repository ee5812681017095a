"""Patient text stays out of the debugging views: `streamdag inspect`, `streamdag errors`
(text and JSON) and the web view (its API and the page in Chromium) show a BYTES tensor by
datatype, shape and digest, and its values only with `--show-values` or, on a server
started with `--ui-show-values`, the page's switch. `errors --replay` still sends the
real values, and the replayed request's new failure is marked as replayed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from kafka_support import run_pipeline

from streamdag.observability.inspect import trace_request
from streamdag.pipeline import PipelineSpec, compile_plan, load_spec

from .browser import dump_dom
from .ui_support import ui_server

pytestmark = pytest.mark.kafka

SENTENCE = "Jane Roe, 54, reports crushing chest pain since Tuesday"
SPEC = """
name: "{name}"
partitions: 2
timeout_ms: 20000
retry: {{max_attempts: 1}}
models:
  note: {{runtime: python, handler: "notes_models:note", outputs: [note, length]}}
steps:
  - {{name: note, model: note}}
output:
  steps: [note]
"""
MODELS = """
import numpy as np


def note(inputs):
    notes = inputs["note"]
    if any(n.startswith(b"REFUSE") for n in notes.reshape(-1)):
        raise ValueError("this note is refused")  # the message quotes no value
    lengths = np.array([len(n) for n in notes.reshape(-1)], dtype=np.int64)
    return {"note": notes, "length": lengths.reshape(notes.shape)}
"""


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "streamdag.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def write_spec(folder: Path, name: str) -> PipelineSpec:
    (folder / "notes_models.py").write_text(MODELS)
    path = folder / "pipeline.yaml"
    path.write_text(SPEC.format(name=name))
    return load_spec(path)


def infer(url: str, pipeline: str, rid: str, text: str) -> int:
    body = {
        "id": rid,
        "inputs": [{"name": "note", "shape": [1], "datatype": "BYTES", "data": [text]}],
    }
    response = httpx.post(f"{url}/v2/pipelines/{pipeline}/infer", json=body, timeout=30)
    return response.status_code


def test_values_are_shown_only_when_asked_and_replayed_as_they_were(
    bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    spec = write_spec(tmp_path, unique_name("phi"))
    path = str(tmp_path / "pipeline.yaml")
    b = ["--bootstrap", bootstrap]
    ok, refused = (f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("ok", "refused"))
    with (
        run_pipeline(spec, bootstrap),
        ui_server(spec, bootstrap) as plain,
        ui_server(spec, bootstrap, ui_show_values=True) as open_values,
    ):
        url = f"http://127.0.0.1:{plain.http_port}"
        assert infer(url, spec.name, ok, SENTENCE) == 200
        assert infer(url, spec.name, refused, f"REFUSE {SENTENCE}") == 500
        page = f"/ui/?pipeline={spec.name}&request={refused}"
        api = f"/ui/api/pipelines/{spec.name}"
        hidden = {
            "inspect": cli("inspect", path, "--request-id", ok, *b),
            "inspect --json": cli("inspect", path, "--request-id", refused, "--json", *b),
            "inspect --last": cli("inspect", path, "--last", "5", "--topic", "inputs", *b),
            "errors": cli("errors", path, *b),
            "errors --json": cli("errors", path, "--json", *b),
            "web search": httpx.get(f"{url}{api}/requests/{ok}", timeout=60).text,
            "web errors": httpx.get(f"{url}{api}/errors", timeout=60).text,
            "web stats": httpx.get(f"{url}{api}/stats", timeout=60).text,
            "web page": dump_dom(f"{url}{page}&values=1"),  # the server allows no switch
            "web page, values allowed, switch off": dump_dom(
                f"http://127.0.0.1:{open_values.http_port}{page}"
            ),
        }
        refused_api = httpx.get(f"{url}{api}/requests/{ok}?values=1", timeout=60)
        open_url = f"http://127.0.0.1:{open_values.http_port}"
        shown = {
            "inspect": cli("inspect", path, "--request-id", ok, "--show-values", *b),
            "inspect --json": cli(
                "inspect", path, "--request-id", refused, "--json", "--show-values", *b
            ),
            "errors --json": cli("errors", path, "--json", "--show-values", *b),
            "web search": httpx.get(f"{open_url}{api}/requests/{ok}?values=1", timeout=60).text,
            "web errors": httpx.get(f"{open_url}{api}/errors?values=1", timeout=60).text,
            "web page": dump_dom(f"{open_url}{page}&values=1"),
        }

        replay = cli("errors", path, "--replay", "--request-id", refused, *b)
        assert replay.startswith("replayed 1 request"), replay
        deadline = time.monotonic() + 60
        while True:
            rows = cli("errors", path, "--request-id", refused, *b).splitlines()[1:]
            if len(rows) == 2 or time.monotonic() > deadline:
                break
            time.sleep(1)
        replayed_json = cli("errors", path, "--json", "--request-id", refused, *b)
        web_errors = httpx.get(f"{url}{api}/errors", timeout=60).json()["latest"]
        trace = trace_request(compile_plan(spec), bootstrap, refused)

    for name, text in hidden.items():
        assert SENTENCE not in text, name
        assert "Jane Roe" not in text, name
    assert "note: BYTES [1] sha256:" in hidden["inspect"]
    assert "length: INT64 [1] sha256:" in hidden["inspect"]
    assert refused_api.status_code == 403, refused_api.text
    for name, text in shown.items():
        assert SENTENCE in text, name

    # The replay sent the note as the caller did, and it failed again: marked as replayed.
    assert len(rows) == 2, rows
    assert "[replayed]" not in rows[0], rows
    assert "  [replayed] model note: " in rows[1], rows
    assert [r["replayed"] for r in json.loads(replayed_json)] == [False, True]
    assert [e["replayed"] for e in web_errors if e["request_id"] == refused] == [True, False]
    inputs = [hop.record for hop in trace.hops if hop.record.role == "inputs"]
    assert [r.replayed for r in inputs] == [False, True]
    assert inputs[1].tensors[0].head == (f"REFUSE {SENTENCE}",)
    assert inputs[1].tensors[0].digest == inputs[0].tensors[0].digest
