"""An in-memory PipelineGateway: echoes its inputs and records what it was given.

A request parameter ``fake_error`` (an error code) makes it raise an error with that
code, as the Kafka gateway does for a pipeline's error reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamdag.errors import DeadlineExceeded, NotFound, StreamdagError
from streamdag.protocol import (
    ModelInferRequest,
    ModelInferResponse,
    decode_request,
    encode_response,
    read_parameters,
)
from streamdag.serving import PipelineReadiness

PIPELINE = "echo-pipe"


class ReplyError(StreamdagError):
    """An error reply from a pipeline, with the code its ``streamdag-error`` header named."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]  # set per instance, as a reply says


@dataclass
class Call:
    pipeline: str
    request: ModelInferRequest
    timeout: float | None
    headers: dict[str, str]


@dataclass
class FakeGateway:
    names: tuple[str, ...] = (PIPELINE,)
    calls: list[Call] = field(default_factory=list)
    jobs: dict[str, list[object]] = field(default_factory=dict)
    started: bool = False
    stopped: bool = False
    record_limit: int = 1_000_000
    reachable: bool = True  # False plays a Kafka that does not answer
    idle_steps: tuple[str, ...] = ()  # steps that play having no worker

    def pipelines(self) -> list[str]:
        return list(self.names)

    def max_record_bytes(self) -> int:
        return self.record_limit

    def ready(self) -> bool:
        return self.reachable

    def readiness(self, pipeline: str) -> PipelineReadiness:
        reason = "; ".join(f"step {s} has no worker" for s in self.idle_steps)
        return PipelineReadiness(not self.idle_steps, reason, {s: 0 for s in self.idle_steps})

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def infer(
        self,
        pipeline: str,
        request: ModelInferRequest,
        *,
        timeout: float | None,
        headers: dict[str, str],
    ) -> tuple[ModelInferResponse, dict[str, str]]:
        self.calls.append(Call(pipeline, request, timeout, headers))
        self._maybe_fail(request)
        reply_headers = {"x-request-id": request.id, "x-pipeline-reply": pipeline}
        return self._reply(pipeline, request), reply_headers

    async def submit(
        self, pipeline: str, request: ModelInferRequest, *, headers: dict[str, str]
    ) -> str:
        self.calls.append(Call(pipeline, request, None, headers))
        # The first poll finds the job running, the second its result.
        self.jobs[request.id] = [request, 0]
        return request.id

    async def job(
        self, pipeline: str, request_id: str, *, caller: str | None = None
    ) -> ModelInferResponse | None:
        if request_id not in self.jobs:
            raise NotFound(f"job {request_id} of pipeline {pipeline} not found")
        entry = self.jobs[request_id]
        request, polls = entry
        assert isinstance(request, ModelInferRequest) and isinstance(polls, int)
        entry[1] = polls + 1
        if polls == 0:
            return None
        self._maybe_fail(request)
        return self._reply(pipeline, request)

    def _reply(self, pipeline: str, request: ModelInferRequest) -> ModelInferResponse:
        return encode_response(
            pipeline,
            decode_request(request),
            id=request.id,
            raw=bool(request.raw_input_contents),
        )

    def _maybe_fail(self, request: ModelInferRequest) -> None:
        params = read_parameters(request.parameters)
        code = params.get("fake_error")
        if code == "deadline_exceeded":
            raise DeadlineExceeded(f"no reply to request {request.id} within 1 s")
        if isinstance(code, str):
            raise ReplyError(code, f"step classify failed: {code} from the pipeline")
