"""The interface between the front doors and the pipelines behind them.

The ``DataPlane`` hands every request aimed at a pipeline to one ``PipelineGateway``; the
Kafka implementation produces to the pipeline's inputs topic and waits for the reply on
its outputs topic. Front doors never see the gateway: they convert and call the
``DataPlane``, which validates first, so a bad request never reaches the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from streamdag.protocol import ModelInferRequest, ModelInferResponse

__all__ = ["PipelineGateway", "PipelineReadiness"]


@dataclass(frozen=True)
class PipelineReadiness:
    """Whether a pipeline's steps run, as last seen: ready while every step's consumer
    group has a member; ``reason`` names the steps with no worker and those with records
    waiting (empty when there is nothing to tell)."""

    ready: bool
    reason: str = ""
    workers: Mapping[str, int] = field(default_factory=dict)  # step -> its group's members
    lag: Mapping[str, int] = field(default_factory=dict)  # step -> records waiting


class PipelineGateway(Protocol):
    """Request-reply and asynchronous jobs for the pipelines a server exposes.

    Every method except ``pipelines`` may raise only ``streamdag.errors`` errors; the
    front doors map their ``code`` to an HTTP or gRPC status. Anything else is a bug
    and answers 500 / INTERNAL.
    """

    def pipelines(self) -> list[str]:
        """Names of the pipelines this gateway serves.

        Called when the ``DataPlane`` is built and for every request, to route a model
        name that is a pipeline name; it must be cheap and must not block.
        """
        ...

    def max_record_bytes(self) -> int:
        """The largest record the gateway can write to a pipeline's inputs topic: the
        serialized request, its key and headers together.

        Called for every request before ``infer`` or ``submit``, which never see a request
        that would not fit; it must be cheap and must not block.
        """
        ...

    def ready(self) -> bool:
        """Whether requests to the pipelines can be taken now (the Kafka gateway: the
        cluster answers and this gateway has a reply partition of every pipeline).

        Called for every health check and pipeline request, so it must be cheap and must
        not block. While it is False the server reports not ready, the pipelines are not
        ready, and requests to them fail at once with ``Unavailable``.
        """
        ...

    def readiness(self, pipeline: str) -> PipelineReadiness:
        """Whether ``pipeline``'s steps have workers, as the gateway last saw them.

        Called for every model-ready check of the pipeline, the repository index and the
        web view's figures, so it must be cheap and must not block: the Kafka gateway
        reads the steps' consumer groups on a thread of its own, every few seconds.
        A pipeline that is not ready still takes requests: they wait in Kafka for a
        worker, and the server stays ready (its readiness is the gateway's ``ready``).
        """
        ...

    async def start(self) -> None:
        """Connect (producer, reply consumer); called once, before the first request.

        Raising stops the server from starting and the error is reported to the user.
        """
        ...

    async def stop(self) -> None:
        """Release the connections; called once at shutdown, after the last request.

        Also called when the server fails to start (this gateway's ``start`` or a model's
        load raised), so it must cope with a gateway that never started. Requests still
        waiting should fail with ``Unavailable``.
        """
        ...

    async def infer(
        self,
        pipeline: str,
        request: ModelInferRequest,
        *,
        timeout: float | None,
        headers: dict[str, str],
    ) -> tuple[ModelInferResponse, dict[str, str]]:
        """Run one request through ``pipeline`` and return its reply and reply headers.

        ``request.id`` is always set (the front door generated one if the caller did
        not) and is the Kafka key. ``timeout`` is in seconds; None means the pipeline's
        ``timeout_ms``. ``headers`` are the caller's ``x-*`` and ``traceparent`` headers, and
        ``streamdag-caller`` (the name of the caller's token) when the server checks tokens.
        Raises ``PipelineNotFound``, ``DeadlineExceeded`` naming the request id, or, for
        an error reply, an error whose ``code`` is the one in the reply.
        """
        ...

    async def submit(
        self, pipeline: str, request: ModelInferRequest, *, headers: dict[str, str]
    ) -> str:
        """Start ``request`` as an asynchronous job and return its id without waiting.

        The id is ``request.id`` (always set); the caller polls ``job`` with it.
        """
        ...

    async def job(
        self, pipeline: str, request_id: str, *, caller: str | None = None
    ) -> ModelInferResponse | None:
        """The reply of a submitted job, or None while it is still running.

        Only a job's result is ever returned, never the answer of a request made by
        ``infer`` or written to the inputs topic by other means, even with the same id.
        With ``caller`` (a token's name) only a job submitted with that name in
        ``streamdag-caller`` counts: another caller's job of the same id is as unknown as
        one never submitted. None (a server without tokens, or an administrator) reads any
        caller's. Raises the reply's error if the job failed, and a ``NotFound`` error if
        the id is unknown, someone else's or its result expired.
        """
        ...
