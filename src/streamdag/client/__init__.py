"""A Python client for ``streamdag serve``: ``Client`` (blocking) and ``AsyncClient``.

    with streamdag.Client("127.0.0.1:8081", token=...) as client:   # gRPC; http://... REST
        outputs = client.infer("medical-records", {"text": ["chest pain since Monday"]})

Inputs are dicts of numpy arrays or lists, outputs dicts of numpy arrays; every failure
is an error of ``streamdag.errors``. See docs/client.md.
"""

from streamdag.client._async import AsyncClient
from streamdag.client._client import (
    DEFAULT_ADDRESS,
    Client,
    Inputs,
    Outputs,
    Protocol,
    as_array,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "AsyncClient",
    "Client",
    "Inputs",
    "Outputs",
    "Protocol",
    "as_array",
]
