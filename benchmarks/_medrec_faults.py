"""The fault-injecting ``icd10`` model of the decoupling benchmark: the example's
``medrec.steps.code_icd10``, made to misbehave on demand, identically wherever it runs (a
model server of the REST chain or a pipeline worker).

The benchmark copies this file beside the specs it writes and steers it through
``faults.json`` in the same folder (read again whenever the file changes):

    poison      raise on the notes whose key falls in a fixed 1% (``is_poison``)
    slow_ms     each note costs this many more milliseconds, one note at a time (as a
                CPU-bound model would under the GIL) between ``slow_from`` and
                ``slow_until`` (Unix time)

Each note the model finishes is appended to ``runs-<pid>.log`` (its key, one a line), so
the benchmark can count how often a note was run.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["POISON_PERCENT", "code_icd10", "is_poison", "note_key"]

POISON_PERCENT = 1
HERE = Path(__file__).resolve().parent
CONTROL = HERE / "faults.json"

_lock = threading.Lock()  # one note at a time while slow: the model's own capacity drops
_state: dict[str, Any] = {"mtime": None, "faults": {}}


class PoisonInput(RuntimeError):
    """The note is one of the deterministic poison subset."""


def note_key(clauses: list[bytes]) -> str:
    """A note's identity as the model sees it: a hash of its non-empty clauses."""
    return hashlib.sha1(b"\x1f".join(c for c in clauses if c)).hexdigest()[:16]


def is_poison(key: str) -> bool:
    return int(key, 16) % 100 < POISON_PERCENT


def _faults() -> dict[str, Any]:
    try:
        mtime = CONTROL.stat().st_mtime_ns
    except FileNotFoundError:
        return {}
    if mtime != _state["mtime"]:
        _state["faults"] = json.loads(CONTROL.read_text() or "{}")
        _state["mtime"] = mtime
    faults: dict[str, Any] = _state["faults"]
    return faults


def code_icd10(inputs: dict[str, Any]) -> dict[str, Any]:
    faults = _faults()
    keys = [note_key([bytes(c) for c in row]) for row in inputs["clauses"]]
    if faults.get("poison"):
        bad = [k for k in keys if is_poison(k)]
        if bad:
            raise PoisonInput(f"cannot code note {bad[0]} (injected poison input)")
    slow_ms = float(faults.get("slow_ms", 0))
    if slow_ms and faults.get("slow_from", 0) <= time.time() < faults.get("slow_until", 0):
        for _ in keys:
            with _lock:
                time.sleep(slow_ms / 1000)
    from medrec.steps import code_icd10 as medrec_code_icd10  # the example's folder is on the path

    outputs = medrec_code_icd10(inputs)
    with (HERE / f"runs-{os.getpid()}.log").open("a") as log:
        log.write("".join(k + "\n" for k in keys))
    return outputs
