"""The bulk benchmark's comparison: the same synthetic notes through the demo's
medical-records pipeline with ``streamdag submit``, and through the REST door by
``CALLERS`` concurrent callers, on the same workers (``streamdag run``, with
``--processes`` as given), in one run on one broker.

The REST door is a ``streamdag serve`` gateway over the pipeline; its callers run a closed
loop over every note (``_openloop.capacity``). ``submit`` reads the notes as one text file
each, as docs/bulk.md has a user do, and its wall time counts from the command's start to
its exit (the interpreter's start and the job's set-up included).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
from _drain import BenchmarkFailed
from _openloop import capacity, open_loop
from _serving import Children, wait_ready

from streamdag.broker import free_port
from streamdag.demo.example import MedicalRecords

__all__ = ["CALLERS", "NotesRun", "compare"]

CALLERS = 16
WARM_UP_S = 180.0  # for the first answer: consumer groups join, models load


@dataclass(frozen=True)
class NotesRun:
    processes: int
    notes: int
    rest_s: float
    rest_per_s: float
    submit_s: float
    submit_per_s: float
    load_avg: tuple[float, float]  # the 1-minute load average after each part

    @property
    def ratio(self) -> float:
        return self.submit_per_s / self.rest_per_s


def write_notes(example: MedicalRecords, n: int, folder: Path) -> list[str]:
    """``n`` notes as text files in ``folder``; their texts, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = []
    for i, doc in enumerate(example.documents(n)):
        (folder / f"note-{i:06d}.txt").write_text(doc.text)
        texts.append(doc.text)
    return texts


def compare(
    example: MedicalRecords,
    bootstrap: str,
    texts: list[str],
    notes: Path,
    processes: int,
    work: Path,
) -> NotesRun:
    """Start the workers and a gateway, warm them up, then the REST callers over every
    note and ``submit`` of the folder, one after the other; every note must come back."""
    spec = example.spec_path
    port = free_port()
    url = f"http://127.0.0.1:{port}/v2/pipelines/medical-records/infer"
    with Children(work) as children:
        run = ["run", str(spec), "-b", bootstrap, "--processes", str(processes)]
        children.start(f"workers-{processes}", run)
        serve = ["serve", str(spec), "--bootstrap", bootstrap]
        serve += ["--http-port", str(port), "--grpc-port", str(free_port())]
        gateway = children.start(f"gateway-{processes}", serve)
        wait_ready(gateway, f"http://127.0.0.1:{port}/v2/health/ready")
        asyncio.run(_warm_up(url, texts[0]))

        tag = uuid.uuid4().hex[:8]
        docs = [(f"rest-{tag}-{i}", text) for i, text in enumerate(texts)]
        started = time.perf_counter()
        rest_per_s = asyncio.run(capacity(url, docs, concurrency=CALLERS, seconds=3600))
        rest_s = time.perf_counter() - started
        # capacity() counts the answers over its own, slightly shorter, span.
        answered = rest_per_s * rest_s
        if answered < len(texts) - 0.5:
            raise BenchmarkFailed(f"the REST door answered {answered:.0f} of {len(texts)} notes")
        rest_load = os.getloadavg()[0]

        out = work / f"submit-{processes}.jsonl"
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "streamdag.cli.main", "submit", str(spec),
             "-i", f"{notes}/*.txt", "-o", str(out), "-b", bootstrap, "-q",
             "--job", f"bench-{tag}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        submit_s = time.perf_counter() - started
        if done.returncode != 0:
            raise BenchmarkFailed(f"submit failed ({done.returncode}):\n{done.stderr[-2000:]}")
        ids = {orjson.loads(line)["id"] for line in out.open("rb")}
        if len(ids) != len(texts):
            raise BenchmarkFailed(f"submit wrote {len(ids)} results for {len(texts)} notes")
        return NotesRun(
            processes,
            len(texts),
            rest_s,
            rest_per_s,
            submit_s,
            len(texts) / submit_s,
            (round(rest_load, 1), round(os.getloadavg()[0], 1)),
        )


async def _warm_up(url: str, text: str) -> None:
    """Until a note comes back, then a few at once (the first of every step are slow)."""
    deadline = time.monotonic() + WARM_UP_S
    attempt = 0
    while True:
        attempt += 1
        outcomes, _ = await open_loop(url, [(f"warm-{attempt}", text)], rate=1, deadline_s=30)
        if outcomes[0].status == "result":
            break
        if time.monotonic() > deadline:
            raise BenchmarkFailed(f"the pipeline does not answer: {outcomes[0].error}")
        await asyncio.sleep(1)
    docs = [(f"warm-{attempt}-{i}", text) for i in range(50)]
    await capacity(url, docs, concurrency=CALLERS, seconds=60)
