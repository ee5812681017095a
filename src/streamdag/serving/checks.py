"""What the DataPlane checks before a request goes anywhere.

A pipeline's workers refuse what does not fit their models, but only after the request
was produced, and the caller learns of it from an error reply. The door refuses the same
at once, with the status the model route gives, and nothing reaches Kafka: an id too
long, a version the pipeline does not have, inputs or requested outputs its models do
not declare, a request too large for a Kafka record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from streamdag.errors import InvalidInput, PipelineNotFound, RecordTooLarge
from streamdag.pipeline import PipelinePlan
from streamdag.pipeline.graph import declared_outputs
from streamdag.protocol import Array, ModelInferRequest, read_parameters
from streamdag.runtimes import ModelMetadata, check_inputs

__all__ = [
    "MAX_REQUEST_ID_LENGTH",
    "check_outputs",
    "check_parameters",
    "check_pipeline_inputs",
    "check_pipeline_outputs",
    "check_pipeline_version",
    "check_record_size",
    "check_request_id",
]

MAX_REQUEST_ID_LENGTH = 256
"""The longest request id taken, in characters. An id travels as the Kafka key, in
headers and in the gRPC trailer, which clients cap (8 KB in grpc's defaults)."""

# What a record holds beyond the message, its key, the gateway's copy of the request id and
# the caller's headers (see KafkaGateway._produce): the request timestamp, the reply
# partition, the trace context, and librdkafka's framing (36 bytes a record, a few more a
# header).
_RECORD_EXTRA_BYTES = 512

Metadata = Callable[[str], ModelMetadata | None]
"""A model's declaration by model name; None while it was never loaded."""


def check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise InvalidInput(
            f"request id: {len(request_id)} characters, more than the "
            f"{MAX_REQUEST_ID_LENGTH} allowed"
        )


def check_parameters(request: ModelInferRequest) -> None:
    """Every parameter of the request, its inputs and its requested outputs holds a value.

    protobuf lets a message carry a parameter with none; no JSON body can, so such a
    request could be neither shown (``inspect``, the web view) nor replayed over REST.
    """
    read_parameters(request.parameters)
    for index, tensor in enumerate(request.inputs):
        read_parameters(tensor.parameters, where=f"inputs[{index}].parameters")
    for index, output in enumerate(request.outputs):
        read_parameters(output.parameters, where=f"outputs[{index}].parameters")


def check_pipeline_version(plan: PipelinePlan, version: str) -> None:
    """A pipeline has the one version its spec names; empty means that one."""
    if version not in ("", plan.version):
        raise PipelineNotFound(plan.name, version)


def check_pipeline_inputs(
    plan: PipelinePlan, arrays: Mapping[str, Array], metadata: Metadata
) -> None:
    """The request's tensors are what the pipeline's steps read from it: every tensor a
    step names is there, and a step that reads the whole request gets exactly the inputs
    its model declares (names, datatypes, shapes), as its worker would check them.

    A tensor no step reads is refused when the pipeline's inputs are all known; a step
    whose model declares nothing takes any tensor.
    """
    where = f"pipeline {plan.name}"
    have = ", ".join(map(repr, arrays))
    read: set[str] | None = set()  # every request tensor some step reads; None: any
    for step in plan.steps:
        refs = [r for r in step.refs if r.is_pipeline]
        if not refs:
            continue
        named = [r.tensor for r in refs if r.tensor is not None]
        for tensor in named:
            if tensor not in arrays:
                raise InvalidInput(
                    f"{where}: missing input {tensor!r}, which step {step.name} reads; "
                    f"the request has {have}"
                )
        whole = len(named) < len(refs)
        taken = list(arrays) if whole else named
        meta = metadata(step.model or "")
        if meta is None or not meta.inputs:
            if whole:
                read = None
            elif read is not None:
                read.update(named)
            continue
        if read is not None:
            read.update(taken)
        # The worker renames by tensor_map and drops the tensors named by triggers (which
        # read steps' outputs), then hands the model the rest.
        triggers = {r.tensor for r in step.triggers}
        renamed = {step.tensor_map.get(f"pipeline.inputs.{k}", k): arrays[k] for k in taken}
        renamed = {k: v for k, v in renamed.items() if k not in triggers}
        declared = [t.name for t in meta.inputs]
        model = f"model {step.model} (step {step.name})"
        # A step that also reads other steps' outputs gets the rest of its inputs there.
        only_request = all(r.is_pipeline for r in step.refs)
        missing = [d for d in declared if d not in renamed]
        if missing and only_request:
            raise InvalidInput(
                f"{where}: missing input {missing[0]!r} of {model}; the request has {have}"
            )
        unknown = [k for k in renamed if k not in declared]
        if unknown:
            raise InvalidInput(
                f"{where}: unknown input {unknown[0]!r} for {model}, which takes "
                f"{', '.join(map(repr, declared))}"
            )
        present = [t for t in meta.inputs if t.name in renamed]
        check_inputs(
            ModelMetadata(meta.name, meta.platform, present, meta.outputs),
            {t.name: renamed[t.name] for t in present},
        )
    if read is not None:
        stray = [k for k in arrays if k not in read]
        if stray:
            raise InvalidInput(
                f"{where}: unknown input {stray[0]!r}; its steps read "
                f"{', '.join(map(repr, sorted(read)))}"
            )


def check_pipeline_outputs(plan: PipelinePlan, wanted: list[str], metadata: Metadata) -> None:
    """Requested outputs are among the pipeline's final outputs, when its output steps'
    models declare theirs (in their metadata, or by name in the spec); otherwise any name
    is taken."""
    if not wanted:
        return
    declared: dict[str, list[str]] = {}
    for step in plan.output_steps:
        node = plan.node(step)
        meta = metadata(node.model or "")
        if meta is not None and meta.outputs:
            declared[step] = [t.name for t in meta.outputs]
            continue
        model = plan.model_spec(node)
        names = declared_outputs(model) if model is not None else None
        if names is None:
            return
        declared[step] = sorted(names)
    available = [name for names in declared.values() for name in names]
    if plan.assembler is not None:
        # The output join keeps same-named tensors of two steps apart as "<step>.<name>".
        available += [f"{step}.{name}" for step, names in declared.items() for name in names]
    check_outputs(f"pipeline {plan.name}", wanted, list(dict.fromkeys(available)))


def check_outputs(where: str, wanted: Iterable[str], available: list[str]) -> None:
    if not available:
        return
    for name in wanted:
        if name not in available:
            known = ", ".join(repr(a) for a in available)
            raise InvalidInput(f"{where}: unknown output {name!r}; it returns {known}")


def check_record_size(
    pipeline: str, request: ModelInferRequest, headers: Mapping[str, str], limit: int
) -> None:
    """The request fits in one record of the pipeline's inputs topic: the serialized
    message, the request id as key and in a header, and the caller's headers, within the
    gateway's ``limit`` (its producer's ``message.max.bytes``). librdkafka would refuse
    a larger record only when it is produced."""
    request_id = len(request.id.encode())
    size = (
        request.ByteSize()
        + 2 * request_id
        + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())
        + _RECORD_EXTRA_BYTES
    )
    if size > limit:
        raise RecordTooLarge(pipeline, size, limit)
