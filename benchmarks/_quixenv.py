"""The virtual environment Quix Streams runs in for the peer benchmark, kept apart from
the project's own (Quix Streams pins confluent-kafka below the version streamdag uses).

It lives in ``.bench-venvs/quix`` at the repository root (ignored by git), is created on
first use and reused while it holds the wanted versions. It gets Quix Streams plus the
protobuf and numpy versions installed here, so both sides parse and build the same
messages with the same libraries; streamdag itself is not installed there.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from _peerenv import ROOT, ensure, versions

__all__ = ["QUIXSTREAMS", "QuixEnv", "quix_env"]

QUIXSTREAMS = "3.28.1"
FOLDER = ROOT / ".bench-venvs" / "quix"


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


def quix_env(folder: Path = FOLDER) -> QuixEnv:
    """The environment in ``folder``, created or brought to the wanted versions if needed."""
    created_s = ensure(folder, wanted(), f"Quix Streams {QUIXSTREAMS}")
    names = ["quixstreams", "confluent-kafka", "protobuf", "numpy"]
    return QuixEnv(folder, versions(folder / "bin" / "python", names), created_s)


if __name__ == "__main__":
    env = quix_env()
    print(env.python, env.versions, f"{env.created_s:.0f}s")
