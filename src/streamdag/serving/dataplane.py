"""The transport-neutral core of the front doors: health, metadata, repository, inference.

Built once in ``server.py`` and shared by the REST and gRPC doors, which only convert.
Every problem is a ``streamdag.errors`` error; each door maps its ``code`` once. A request
is checked before anything runs (the target exists, the tensors decode and, for a model,
fit its inputs; for a pipeline, nothing its workers would refuse: see ``checks``); then a
pipeline request goes to the ``PipelineGateway``, a model request to the model's adaptive
batcher. Large messages are decoded and encoded in a worker thread (``offload``), so that
one caller does not stall the event loop for the others.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any, TypeVar

from streamdag.errors import (
    ConfigError,
    DeadlineExceeded,
    InvalidInput,
    ModelError,
    PipelineNotFound,
    StreamdagError,
    Unavailable,
)
from streamdag.pipeline import PipelinePlan
from streamdag.protocol import (
    Array,
    ModelInferRequest,
    ModelInferResponse,
    decode_request,
    encode_response,
    parameter_value,
    requested_outputs,
)
from streamdag.runtimes import ModelMetadata, TensorSpec, check_inputs
from streamdag.serving.checks import (
    check_outputs,
    check_parameters,
    check_pipeline_inputs,
    check_pipeline_outputs,
    check_pipeline_version,
    check_record_size,
    check_request_id,
)
from streamdag.serving.gateway_api import PipelineGateway, PipelineReadiness
from streamdag.serving.offload import run_sized
from streamdag.serving.pipeline_metadata import (
    pipeline_description,
    pipeline_inputs,
    pipeline_outputs,
)
from streamdag.serving.repository import MODEL_VERSION, ModelRepository, RepositoryEntry

__all__ = ["DataPlane", "ModelDescription", "ServerMetadata"]

PIPELINE_PLATFORM = "streamdag_pipeline"
_EXTENSIONS = ["binary_tensor_data", "model_repository", "parameters"]

_T = TypeVar("_T")
_GATEWAY_NOT_READY = "Kafka does not answer, or the gateway has no reply partition yet"


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: list[str]


@dataclass(frozen=True)
class ModelDescription:
    """OIP model metadata; shapes use -1 for variable dimensions, batch first."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class DataPlane:
    """Models declared by pipeline specs, plus the pipelines behind an optional gateway."""

    def __init__(
        self, plans: Sequence[PipelinePlan], *, gateway: PipelineGateway | None = None
    ) -> None:
        self._repository = ModelRepository([plan.spec for plan in plans])
        self._gateway = gateway
        self._plans = {plan.name: plan for plan in plans}
        self._started = False
        clash = set(self._repository.names()) & set(self.pipelines())
        if clash:
            name = sorted(clash)[0]
            raise ConfigError(
                f"model {name} has the name of a pipeline, so /v2/models/{name} would be "
                "ambiguous; rename the model"
            )

    async def start(self) -> None:
        """Start the gateway and load every model; raises the first failure."""
        if self._gateway is not None:
            await self._gateway.start()
        await self._repository.load_all()
        self._started = True

    async def stop(self) -> None:
        """Finish the requests in flight, unload the models, stop the gateway."""
        self._started = False
        await self._repository.unload_all()
        if self._gateway is not None:
            await self._gateway.stop()

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """True once every model loaded at start, until shutdown begins, while the gateway
        (if any) can take requests: a server that cannot reach Kafka is live, not ready."""
        return self._started and (self._gateway is None or self._gateway.ready())

    def server_metadata(self) -> ServerMetadata:
        extensions = [*_EXTENSIONS, "pipelines"] if self._gateway is not None else _EXTENSIONS
        return ServerMetadata("streamdag", package_version("streamdag"), list(extensions))

    def models(self) -> list[str]:
        return self._repository.names()

    def pipelines(self) -> list[str]:
        return self._gateway.pipelines() if self._gateway is not None else []

    def plans(self) -> list[PipelinePlan]:
        """The pipeline plans this DataPlane was built from, in the order given."""
        return list(self._plans.values())

    def model_ready(self, name: str, version: str | None = None) -> bool:
        return self.model_readiness(name, version)[0]

    def model_readiness(self, name: str, version: str | None = None) -> tuple[bool, str]:
        """Whether the model or pipeline ``name`` can serve now, and if not, why.

        A pipeline is ready while the server is and every one of its steps has a worker
        (its consumer group a member, as the gateway last saw it): without one, its
        requests would wait in Kafka until they time out."""
        if self._is_pipeline(name):
            self._check_pipeline_version(name, version or "")
            readiness = self.pipeline_readiness(name)
            if readiness.ready:
                return True, ""
            return False, f"pipeline {name} is not ready: {readiness.reason}"
        state = self._repository.get(name, version or "").state
        return state == "READY", "" if state == "READY" else f"model {name} is not ready"

    def pipeline_readiness(self, pipeline: str) -> PipelineReadiness:
        """The readiness of ``pipeline``'s steps, not ready while the server is not."""
        steps = self._gateway_for(pipeline).readiness(pipeline)
        if not self._started:
            return PipelineReadiness(False, "the server is starting or stopping", steps.workers)
        if not self._gateway_for(pipeline).ready():
            return PipelineReadiness(False, _GATEWAY_NOT_READY, steps.workers, steps.lag)
        return steps

    def model_metadata(self, name: str, version: str | None = None) -> ModelDescription:
        if self._is_pipeline(name):
            self._check_pipeline_version(name, version or "")
            plan = self._plans.get(name)
            if plan is None:  # a gateway's pipeline this server has no spec of
                return ModelDescription(name, [], PIPELINE_PLATFORM, [], [])
            return ModelDescription(
                name,
                [plan.version],
                PIPELINE_PLATFORM,
                [_described(t) for t in pipeline_inputs(plan, self._declared)],
                [_described(t) for t in pipeline_outputs(plan, self._declared)],
            )
        served = self._repository.get(name, version or "")
        meta = served.metadata
        if meta is None:
            raise Unavailable(f"model {name} was never loaded, so its metadata is unknown")
        return ModelDescription(
            name,
            [MODEL_VERSION],
            meta.platform,
            [_described(t) for t in meta.inputs],
            [_described(t) for t in meta.outputs],
        )

    def pipeline_metadata(self, pipeline: str) -> tuple[ModelDescription, dict[str, Any]]:
        """``pipeline``'s model metadata, and its steps and topics (``pipeline_description``)
        when this server has its spec (else empty)."""
        self._gateway_for(pipeline)
        plan = self._plans.get(pipeline)
        return self.model_metadata(pipeline), pipeline_description(plan) if plan else {}

    def repository_index(self, *, ready_only: bool = False) -> list[RepositoryEntry]:
        """Every model, then every pipeline (READY while the gateway can take requests
        and every step has a worker: its workers run elsewhere)."""
        pipelines = []
        for p in self.pipelines():
            readiness = self.pipeline_readiness(p)
            if readiness.ready:
                pipelines.append(RepositoryEntry(p, "", "READY"))
            elif not ready_only:
                pipelines.append(RepositoryEntry(p, "", "UNAVAILABLE", readiness.reason))
        return [*self._repository.index(ready_only=ready_only), *pipelines]

    async def load(self, name: str) -> None:
        self._not_a_pipeline(name, "loaded")
        await self._repository.load(name)

    async def unload(self, name: str) -> None:
        self._not_a_pipeline(name, "unloaded")
        await self._repository.unload(name)

    async def infer(
        self,
        request: ModelInferRequest,
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ModelInferResponse:
        """Run ``request`` on the model or pipeline named by ``request.model_name``."""
        response, _ = await self.infer_with_headers(request, timeout=timeout, headers=headers)
        return response

    async def infer_with_headers(
        self,
        request: ModelInferRequest,
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        inputs: Mapping[str, Array] | None = None,
    ) -> tuple[ModelInferResponse, dict[str, str]]:
        """As ``infer``, plus the reply headers of a pipeline (none for a model).

        ``timeout`` (seconds) is the transport's own deadline, if any; the request
        parameter ``timeout`` (seconds) shortens it. ``inputs``, when a door has them
        already (from a JSON body), are the arrays the request's contents hold: they are
        used instead of decoding the contents again.
        """
        if not request.model_name:
            raise InvalidInput("model_name: must not be empty")
        check_request_id(request.id)
        check_parameters(request)
        if self._is_pipeline(request.model_name):
            return await self.infer_pipeline(
                request.model_name, request, timeout=timeout, headers=headers, inputs=inputs
            )
        return await self._infer_model(request, _deadline(request, timeout), inputs), {}

    async def infer_pipeline(
        self,
        pipeline: str,
        request: ModelInferRequest,
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        inputs: Mapping[str, Array] | None = None,
    ) -> tuple[ModelInferResponse, dict[str, str]]:
        """Request-reply through ``pipeline``; the reply and its headers. ``inputs``: as
        in ``infer_with_headers``."""
        gateway = self._gateway_for(pipeline)
        forwarded = dict(headers or {})
        await self._check_pipeline_request(pipeline, request, forwarded, gateway, inputs)
        _check_ready(pipeline, gateway)
        deadline = _deadline(request, timeout)
        try:
            return await _guard(
                pipeline, gateway.infer(pipeline, request, timeout=deadline, headers=forwarded)
            )
        except DeadlineExceeded as exc:
            hint = _timeout_unit_hint(request)
            if not hint:
                raise
            raise DeadlineExceeded(f"{exc}{hint}") from None

    async def submit(
        self, pipeline: str, request: ModelInferRequest, *, headers: Mapping[str, str] | None = None
    ) -> str:
        """Start an asynchronous job; its id is ``request.id``."""
        gateway = self._gateway_for(pipeline)
        forwarded = dict(headers or {})
        await self._check_pipeline_request(pipeline, request, forwarded, gateway)
        _check_ready(pipeline, gateway)
        return await _guard(pipeline, gateway.submit(pipeline, request, headers=forwarded))

    async def job(
        self, pipeline: str, request_id: str, *, caller: str | None = None
    ) -> ModelInferResponse | None:
        """A job's reply, or None while it runs; a failed job raises its error. With
        ``caller`` only a job that caller submitted is found (see ``PipelineGateway.job``)."""
        check_request_id(request_id)
        gateway = self._gateway_for(pipeline)
        return await _guard(pipeline, gateway.job(pipeline, request_id, caller=caller))

    async def _check_pipeline_request(
        self,
        pipeline: str,
        request: ModelInferRequest,
        headers: Mapping[str, str],
        gateway: PipelineGateway,
        inputs: Mapping[str, Array] | None = None,
    ) -> None:
        """Bad input must never reach Kafka, nor a request its inputs topic cannot hold:
        whatever the pipeline's workers or the producer would refuse (see ``checks``),
        the cheap checks first."""
        check_request_id(request.id)
        check_parameters(request)
        self._check_pipeline_version(pipeline, request.model_version)
        check_record_size(pipeline, request, headers, gateway.max_record_bytes())
        await run_sized(request.ByteSize(), self._check_pipeline_tensors, pipeline, request, inputs)

    def _check_pipeline_tensors(
        self, pipeline: str, request: ModelInferRequest, inputs: Mapping[str, Array] | None
    ) -> None:
        arrays = decode_request(request) if inputs is None else inputs
        if not arrays:
            raise InvalidInput(f"pipeline {pipeline}: the request has no input tensors")
        plan = self._plans.get(pipeline)
        if plan is not None:
            check_pipeline_inputs(plan, arrays, self._declared)
            check_pipeline_outputs(plan, requested_outputs(request), self._declared)

    def _check_pipeline_version(self, pipeline: str, version: str) -> None:
        plan = self._plans.get(pipeline)
        if plan is not None:
            check_pipeline_version(plan, version)

    def _declared(self, model: str) -> ModelMetadata | None:
        return self._repository.get(model).metadata

    async def _infer_model(
        self,
        request: ModelInferRequest,
        deadline: float | None,
        inputs: Mapping[str, Array] | None = None,
    ) -> ModelInferResponse:
        name = request.model_name
        served = self._repository.get(name, request.model_version)
        batcher = served.ready_batcher()
        meta = served.metadata
        assert meta is not None  # a READY model has been loaded
        if inputs is None:
            arrays = await run_sized(request.ByteSize(), _decoded_inputs, meta, request)
        else:
            arrays = dict(inputs)
            check_inputs(meta, arrays)
        wanted = requested_outputs(request)
        check_outputs(f"model {name}", wanted, [t.name for t in meta.outputs])
        try:
            if deadline is None:  # wait_for would wrap the call in a task of its own
                outputs = await batcher.run(arrays)
            else:
                outputs = await asyncio.wait_for(batcher.run(arrays), deadline)
        except TimeoutError:
            raise DeadlineExceeded(
                f"request {request.id or '(no id)'} to model {name} did not finish "
                f"within {deadline:g} s"
            ) from None
        if wanted:
            check_outputs(f"model {name}", wanted, list(outputs))
            outputs = {key: outputs[key] for key in wanted}
        size = sum(getattr(value, "nbytes", 0) for value in outputs.values())
        try:
            return await run_sized(
                size,
                encode_response,
                name,
                outputs,
                id=request.id,
                model_version=MODEL_VERSION,
                # Answer in the form the caller used: clients such as tritonclient.grpc
                # read numeric outputs only from raw contents.
                raw=bool(request.raw_input_contents),
            )
        except InvalidInput as exc:
            raise ModelError(f"model {name} returned an output OIP cannot carry: {exc}") from exc

    def _is_pipeline(self, name: str) -> bool:
        return self._gateway is not None and name in self._gateway.pipelines()

    def _gateway_for(self, pipeline: str) -> PipelineGateway:
        if self._gateway is None or pipeline not in self._gateway.pipelines():
            raise PipelineNotFound(pipeline)
        return self._gateway

    def _not_a_pipeline(self, name: str, what: str) -> None:
        if self._is_pipeline(name):
            raise InvalidInput(
                f"{name} is a pipeline; its workers run on their own and it cannot be {what} here"
            )


def _decoded_inputs(meta: ModelMetadata, request: ModelInferRequest) -> dict[str, Array]:
    arrays = decode_request(request)
    check_inputs(meta, arrays)
    return arrays


def _described(spec: TensorSpec) -> TensorSpec:
    # An empty shape means "rank unknown"; OIP has no word for that, and [] would say
    # scalar, so report the one thing known: a variable batch axis.
    return spec if spec.shape else TensorSpec(spec.name, spec.datatype, [-1])


def _timeout_unit_hint(request: ModelInferRequest) -> str:
    """A reminder of the unit when a ``timeout`` parameter under 1 ms ran out: most likely
    meant in seconds or milliseconds."""
    if "timeout" not in request.parameters:
        return ""
    value = parameter_value(request.parameters["timeout"], name="parameters.timeout")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 1000:
        return (
            f" (parameters.timeout is in microseconds, as in Triton: {value:g} means {value:g} µs)"
        )
    return ""


def _deadline(request: ModelInferRequest, transport: float | None) -> float | None:
    """The shorter of the transport's deadline and the ``timeout`` parameter, in seconds.

    The parameter is in microseconds, as Triton defines it and tritonclient sends it
    (``client.infer(..., timeout=...)``), so standard clients bound their requests
    unchanged.
    """
    if "timeout" not in request.parameters:
        return transport
    value = parameter_value(request.parameters["timeout"], name="parameters.timeout")
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidInput(
            f"parameters.timeout: must be a positive number of microseconds, got {value!r}"
        )
    if math.isinf(value):
        return transport
    seconds = float(value) / 1_000_000
    return seconds if transport is None else min(seconds, transport)


async def _guard(pipeline: str, call: Awaitable[_T]) -> _T:
    """Await a gateway call; a non-streamdag error is a gateway bug, reported as internal."""
    try:
        return await call
    except StreamdagError:
        raise
    except Exception as exc:
        raise StreamdagError(
            f"pipeline {pipeline}: the gateway failed: {type(exc).__name__}: {exc}"
        ) from exc


def _check_ready(pipeline: str, gateway: PipelineGateway) -> None:
    """Turn a request away at once while the gateway cannot take it: sent to Kafka then, it
    would wait in the client and could run long after its caller gave up."""
    if not gateway.ready():
        raise Unavailable(f"pipeline {pipeline} is not ready: {_GATEWAY_NOT_READY}")
