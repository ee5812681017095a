"""streamdag.

``streamdag.submit(spec, rows)`` runs a bulk job (``streamdag.bulk``); it is imported on
first use, so ``import streamdag`` stays cheap for the workers.
"""

from typing import Any

__all__ = ["submit"]


def __getattr__(name: str) -> Any:
    if name == "submit":
        from streamdag.bulk import submit

        return submit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
