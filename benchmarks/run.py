"""Run every benchmark of this folder in turn: each ``*.py`` except this file and helper
modules (names starting with ``_``), each with this script's arguments.

    python benchmarks/run.py [ARGS...]      # what `make bench` runs

Exits non-zero if any benchmark failed; the others still run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks() -> list[Path]:
    return sorted(
        p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    failed: list[str] = []
    for path in benchmarks():
        print(f"== {path.name}", flush=True)
        code = subprocess.run([sys.executable, str(path), *argv], check=False).returncode
        if code != 0:
            print(f"== {path.name} failed with exit code {code}", flush=True)
            failed.append(path.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
