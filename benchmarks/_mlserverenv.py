"""The virtual environment MLServer runs in for ``mlserver.py``, kept apart from the
project's own (MLServer pins its own FastAPI, uvicorn, grpcio and protobuf).

It lives in ``.bench-venvs/mlserver`` at the repository root (ignored by git), is created
on first use and reused while it holds the wanted MLServer. streamdag is not installed
there: the MLServer side runs only MLServer and the model file the benchmark writes.
"""

from __future__ import annotations

from pathlib import Path

from _peerenv import ROOT, ensure, versions

__all__ = ["MLSERVER", "MLServerEnv", "mlserver_env"]

MLSERVER = "1.7.1"
FOLDER = ROOT / ".bench-venvs" / "mlserver"
_REPORTED = ["mlserver", "fastapi", "uvicorn", "grpcio", "protobuf", "orjson", "numpy"]


class MLServerEnv:
    """A ready environment: its ``mlserver`` command and the versions it holds."""

    def __init__(self, folder: Path, versions: dict[str, str], created_s: float) -> None:
        self.folder = folder
        self.python = folder / "bin" / "python"
        self.mlserver = folder / "bin" / "mlserver"
        self.versions = versions
        self.created_s = created_s  # 0 when reused as it was


def mlserver_env(folder: Path = FOLDER) -> MLServerEnv:
    """The environment in ``folder``, created or brought to MLServer ``MLSERVER`` if needed."""
    created_s = ensure(folder, {"mlserver": MLSERVER}, f"MLServer {MLSERVER}")
    return MLServerEnv(folder, versions(folder / "bin" / "python", _REPORTED), created_s)


if __name__ == "__main__":
    env = mlserver_env()
    print(env.mlserver, env.versions, f"{env.created_s:.0f}s")
