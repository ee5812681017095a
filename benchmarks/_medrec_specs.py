"""The specs the decoupling benchmark runs, written from the example's own pipeline.yaml:

    pipeline.yaml     the example's pipeline under a fresh name, its ``icd10`` model replaced
                      by ``_medrec_faults.code_icd10`` and its ``timeout_ms`` raised past the
                      callers' deadline (so that the deadline, not the gateway, decides
                      what is lost)
    model-<m>.yaml    one spec per model, for the REST chain's one-server-per-model

ONNX paths are made absolute, and ``_medrec_faults.py`` is copied beside the specs, where
the engine looks for handlers; the example's folder goes on the children's PYTHONPATH for
the ``medrec`` package. The example itself is not changed.
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["FAULTY_MODEL", "FAULTY_STEP", "BenchSpecs", "write_specs"]

HERE = Path(__file__).resolve().parent
FAULTY_MODEL = "icd10"  # mid-DAG: after the fan-out and its join, before risk and the gate
FAULTY_STEP = "coder"  # the pipeline step that runs it


@dataclass(frozen=True)
class BenchSpecs:
    folder: Path
    pipeline: Path
    pipeline_name: str
    models: dict[str, Path]  # model name -> its one-model spec
    env: dict[str, str]  # for child processes: PYTHONPATH with the example's folder

    @property
    def control(self) -> Path:
        return self.folder / "faults.json"

    def runs_logs(self) -> list[Path]:
        return sorted(self.folder.glob("runs-*.log"))


def write_specs(example: Path, folder: Path, run_id: str, *, deadline_s: float) -> BenchSpecs:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "_medrec_faults.py", folder / "_medrec_faults.py")
    spec: dict[str, Any] = yaml.safe_load((example / "pipeline.yaml").read_text())
    for model in spec["models"].values():
        if "uri" in model:
            model["uri"] = str((example / model["uri"]).resolve())
    spec["models"][FAULTY_MODEL]["handler"] = "_medrec_faults:code_icd10"
    name = f"{spec['name']}-{run_id}"
    spec["name"] = name
    spec["timeout_ms"] = int((deadline_s + 5) * 1000)
    pipeline = folder / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump(spec, sort_keys=False))
    models: dict[str, Path] = {}
    for model_name, model in spec["models"].items():
        one = {
            "name": f"model-{model_name}-{run_id}",
            "models": {model_name: copy.deepcopy(model)},
            "steps": [{"name": model_name, "model": model_name}],
        }
        models[model_name] = folder / f"model-{model_name}.yaml"
        models[model_name].write_text(yaml.safe_dump(one, sort_keys=False))
    path = os.pathsep.join(p for p in (str(example.resolve()), os.environ.get("PYTHONPATH")) if p)
    return BenchSpecs(folder, pipeline, name, models, {**os.environ, "PYTHONPATH": path})
