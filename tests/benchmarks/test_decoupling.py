"""benchmarks/decoupling.py --quick with a tiny load: every request is accounted for once,
and the crash of the mid-DAG model looks as the docs say (errors naming icd10 from the
REST chain, no errors from the pipeline)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from streamdag.demo import EXAMPLE_DIR, MedicalRecords

ROOT = Path(__file__).resolve().parents[2]
RATE, DURATION_S = 3.0, 4.0


@pytest.mark.kafka
@pytest.mark.timeout(400)
def test_quick_run_accounts_for_every_request(bootstrap: str, tmp_path: Path) -> None:
    example = tmp_path / "medical_records"
    example.mkdir()
    shutil.copy(EXAMPLE_DIR / "pipeline.yaml", example / "pipeline.yaml")
    shutil.copytree(
        EXAMPLE_DIR / "medrec", example / "medrec", ignore=shutil.ignore_patterns("__pycache__")
    )
    MedicalRecords(example).train(train_notes=300, test_notes=100)
    out = tmp_path / "results.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "decoupling.py"),
        "--quick",
        f"--rate={RATE}",
        f"--duration-s={DURATION_S}",
        "--scenarios=steady,crash",
        f"--bootstrap={bootstrap}",
        f"--example={example}",
        f"--json={out}",
        "--per-request",
        "--no-plot",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=380, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rows = {(r["architecture"], r["scenario"]): r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {
        (arch, scenario)
        for arch in ("REST chain", "streamdag pipeline")
        for scenario in ("steady", "crash")
    }
    for (arch, scenario), row in rows.items():
        requests = row["requests"]
        assert row["sent"] == len(requests) == math.ceil(RATE * DURATION_S), (arch, scenario)
        assert len({rid for rid, _, _ in requests}) == row["sent"]
        statuses = Counter(status for _, status, _ in requests)
        assert set(statuses) <= {"result", "error", "lost"}
        assert statuses == Counter({k: row[k] for k in ("result", "error", "lost") if row[k]}), (
            arch,
            scenario,
        )
        assert row["duplicate_answers"] == 0
    for arch in ("REST chain", "streamdag pipeline"):
        assert rows[arch, "steady"]["result"] == rows[arch, "steady"]["sent"], arch
    chain, pipeline = rows["REST chain", "crash"], rows["streamdag pipeline", "crash"]
    assert chain["error"] > 0
    assert chain["error_names_model"] == chain["error"]
    assert pipeline["error"] == 0
