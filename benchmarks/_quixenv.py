"""The virtual environment Quix Streams runs in for the peer benchmark, kept apart from
the project's own (Quix Streams pins confluent-kafka below the version streamdag uses).

It lives in ``.bench-venvs/quix`` at the repository root (ignored by git), is created on
first use and reused while it holds the wanted versions. It gets Quix Streams plus the
protobuf and numpy versions installed here, so both sides parse and build the same
messages with the same libraries; streamdag itself is not installed there.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _drain import BenchmarkFailed

__all__ = ["QUIXSTREAMS", "QuixEnv", "quix_env"]

QUIXSTREAMS = "3.28.1"
ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / ".bench-venvs" / "quix"

_VERSIONS = """\
import importlib.metadata as m, json, sys
print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))
"""


class QuixEnv:
    """A ready environment: its interpreter and the versions it holds."""

    def __init__(self, folder: Path, versions: dict[str, str], created_s: float) -> None:
        self.folder = folder
        self.python = folder / "bin" / "python"
        self.versions = versions
        self.created_s = created_s  # 0 when reused as it was


def wanted() -> dict[str, str]:
    return {
        "quixstreams": QUIXSTREAMS,
        "protobuf": importlib.metadata.version("protobuf"),
        "numpy": importlib.metadata.version("numpy"),
    }


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


def _versions_of(python: Path) -> dict[str, str]:
    names = ["quixstreams", "confluent-kafka", "protobuf", "numpy"]
    versions = _installed(python, names)
    if versions is None:
        raise BenchmarkFailed(f"{python}: cannot read the installed versions")
    return versions


def quix_env(folder: Path = FOLDER) -> QuixEnv:
    """The environment in ``folder``, created or brought to the wanted versions if needed."""
    want = wanted()
    python = folder / "bin" / "python"
    have = _installed(python, list(want))
    if have == want:
        return QuixEnv(folder, _versions_of(python), 0.0)
    started = time.perf_counter()
    if have is None:  # missing, or an interpreter that no longer runs: start over
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        print(f"creating {folder} (Quix Streams {QUIXSTREAMS})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    else:
        print(f"updating {folder}: {have} -> {want}", flush=True)
    install = [f"{name}=={version}" for name, version in want.items()]
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *install],
        check=False,
    )
    if done.returncode != 0 or _installed(python, list(want)) != want:
        raise BenchmarkFailed(f"could not install {' '.join(install)} into {folder}")
    return QuixEnv(folder, _versions_of(python), time.perf_counter() - started)


if __name__ == "__main__":
    env = quix_env()
    print(env.python, env.versions, f"{env.created_s:.0f}s")
