"""A virtual environment of its own for a peer a benchmark compares against (Quix Streams,
MLServer), kept apart from the project's: created on first use, reused while it holds the
wanted versions. Lives under ``.bench-venvs/`` at the repository root (ignored by git)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _drain import BenchmarkFailed

__all__ = ["ROOT", "ensure", "installed", "versions"]

ROOT = Path(__file__).resolve().parent.parent

_VERSIONS = """\
import importlib.metadata as m, json, sys
print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))
"""


def installed(python: Path, names: list[str]) -> dict[str, str] | None:
    """The versions of ``names`` in the environment of ``python``; None if it cannot tell."""
    if not python.exists():
        return None
    done = subprocess.run(
        [str(python), "-c", _VERSIONS, *names], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return None
    found: dict[str, str] = json.loads(done.stdout)
    return found


def versions(python: Path, names: list[str]) -> dict[str, str]:
    found = installed(python, names)
    if found is None:
        raise BenchmarkFailed(f"{python}: cannot read the installed versions")
    return found


def ensure(folder: Path, want: dict[str, str], what: str) -> float:
    """Make ``folder`` an environment holding exactly the ``want`` versions; the seconds
    that took (0 when it already did)."""
    python = folder / "bin" / "python"
    have = installed(python, list(want))
    if have == want:
        return 0.0
    started = time.perf_counter()
    if have is None:  # missing, or an interpreter that no longer runs: start over
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        print(f"creating {folder} ({what})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    else:
        print(f"updating {folder}: {have} -> {want}", flush=True)
    install = [f"{name}=={version}" for name, version in want.items()]
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *install],
        check=False,
    )
    if done.returncode != 0 or installed(python, list(want)) != want:
        raise BenchmarkFailed(f"could not install {' '.join(install)} into {folder}")
    return time.perf_counter() - started
