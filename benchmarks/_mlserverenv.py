"""The virtual environment MLServer runs in for ``mlserver.py``, kept apart from the
project's own (MLServer pins its own FastAPI, uvicorn, grpcio and protobuf).

It lives in ``.bench-venvs/mlserver`` at the repository root (ignored by git), is created
on first use and reused while it holds the wanted MLServer. streamdag is not installed
there: the MLServer side runs only MLServer and the model file the benchmark writes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _drain import BenchmarkFailed

__all__ = ["MLSERVER", "MLServerEnv", "mlserver_env"]

MLSERVER = "1.7.1"
ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / ".bench-venvs" / "mlserver"
_REPORTED = ["mlserver", "fastapi", "uvicorn", "grpcio", "protobuf", "orjson", "numpy"]

_VERSIONS = """\
import importlib.metadata as m, json, sys
print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))
"""


class MLServerEnv:
    """A ready environment: its ``mlserver`` command and the versions it holds."""

    def __init__(self, folder: Path, versions: dict[str, str], created_s: float) -> None:
        self.folder = folder
        self.python = folder / "bin" / "python"
        self.mlserver = folder / "bin" / "mlserver"
        self.versions = versions
        self.created_s = created_s  # 0 when reused as it was


def _installed(python: Path, names: list[str]) -> dict[str, str] | None:
    if not python.exists():
        return None
    done = subprocess.run(
        [str(python), "-c", _VERSIONS, *names], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return None
    versions: dict[str, str] = json.loads(done.stdout)
    return versions


def mlserver_env(folder: Path = FOLDER) -> MLServerEnv:
    """The environment in ``folder``, created or brought to MLServer ``MLSERVER`` if needed."""
    python = folder / "bin" / "python"
    have = _installed(python, ["mlserver"])
    started = time.perf_counter()
    if have != {"mlserver": MLSERVER}:
        if have is None:  # missing, or an interpreter that no longer runs: start over
            shutil.rmtree(folder, ignore_errors=True)
            folder.parent.mkdir(parents=True, exist_ok=True)
            print(f"creating {folder} (MLServer {MLSERVER})", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        done = subprocess.run([*install, f"mlserver=={MLSERVER}"], check=False)
        if done.returncode != 0 or _installed(python, ["mlserver"]) != {"mlserver": MLSERVER}:
            raise BenchmarkFailed(f"could not install mlserver=={MLSERVER} into {folder}")
    versions = _installed(python, _REPORTED)
    if versions is None:
        raise BenchmarkFailed(f"{python}: cannot read the installed versions")
    created_s = 0.0 if have == {"mlserver": MLSERVER} else time.perf_counter() - started
    return MLServerEnv(folder, versions, created_s)


if __name__ == "__main__":
    env = mlserver_env()
    print(env.mlserver, env.versions, f"{env.created_s:.0f}s")
