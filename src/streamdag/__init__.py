"""streamdag.

``streamdag.submit(spec, rows)`` runs a bulk job (``streamdag.bulk``); ``streamdag.Client``
and ``streamdag.AsyncClient`` call a running ``streamdag serve`` (``streamdag.client``).
Each is imported on first use, so ``import streamdag`` stays cheap for the workers.
"""

from typing import Any

__all__ = ["AsyncClient", "Client", "submit"]


def __getattr__(name: str) -> Any:
    if name == "submit":
        from streamdag.bulk import submit

        return submit
    if name in ("Client", "AsyncClient"):
        from streamdag import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
