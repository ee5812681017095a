"""``AsyncClient``: ``Client``'s calls as coroutines, for notebooks and asyncio services.

Each call runs the blocking ``Client`` call in a worker thread (``asyncio.to_thread``):
its gRPC channel and httpx client are thread-safe, so concurrent calls share one
connection, and errors are the same ``streamdag.errors`` classes. Concurrency is bounded
by the event loop's default executor (``min(32, cores + 4)`` threads).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from streamdag import protocol as oip
from streamdag.client._client import DEFAULT_ADDRESS, Client, Inputs, Outputs, Protocol
from streamdag.protocol import ParameterValue
from streamdag.runtimes import ModelMetadata

__all__ = ["AsyncClient"]


class AsyncClient:
    """As ``Client`` (same arguments, same methods), each method a coroutine."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        protocol: Protocol | None = None,
        token: str | None = None,
        cacert: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        timeout: float = 60.0,
        rest_url: str | None = None,
    ) -> None:
        self.sync = Client(
            address,
            protocol=protocol,
            token=token,
            cacert=cacert,
            cert=cert,
            key=key,
            timeout=timeout,
            rest_url=rest_url,
        )

    async def infer(
        self,
        name: str,
        inputs: Inputs,
        *,
        outputs: Sequence[str] = (),
        id: str = "",
        parameters: Mapping[str, ParameterValue] | None = None,
        version: str = "",
        timeout: float | None = None,
    ) -> Outputs:
        return await asyncio.to_thread(
            self.sync.infer,
            name,
            inputs,
            outputs=outputs,
            id=id,
            parameters=parameters,
            version=version,
            timeout=timeout,
        )

    async def infer_request(
        self, request: oip.ModelInferRequest, *, timeout: float | None = None
    ) -> oip.ModelInferResponse:
        return await asyncio.to_thread(self.sync.infer_request, request, timeout=timeout)

    async def submit_job(
        self,
        pipeline: str,
        inputs: Inputs,
        *,
        id: str = "",
        parameters: Mapping[str, ParameterValue] | None = None,
        timeout: float | None = None,
    ) -> str:
        return await asyncio.to_thread(
            self.sync.submit_job, pipeline, inputs, id=id, parameters=parameters, timeout=timeout
        )

    async def job_result(
        self, pipeline: str, job: str, *, wait: float = 0.0, timeout: float | None = None
    ) -> Outputs | None:
        return await asyncio.to_thread(
            self.sync.job_result, pipeline, job, wait=wait, timeout=timeout
        )

    async def wait_job(self, pipeline: str, job: str, *, timeout: float | None = None) -> Outputs:
        return await asyncio.to_thread(self.sync.wait_job, pipeline, job, timeout=timeout)

    async def metadata(
        self, name: str, *, version: str = "", timeout: float | None = None
    ) -> ModelMetadata:
        return await asyncio.to_thread(self.sync.metadata, name, version=version, timeout=timeout)

    async def pipeline(self, name: str, *, timeout: float | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.pipeline, name, timeout=timeout)

    async def ready(self, name: str | None = None, *, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.sync.ready, name, timeout=timeout)

    async def live(self, *, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.sync.live, timeout=timeout)

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
