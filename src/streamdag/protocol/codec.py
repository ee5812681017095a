"""numpy arrays <-> ``ModelInferRequest`` / ``ModelInferResponse``.

Tensors travel either all raw (``raw_input_contents`` / ``raw_output_contents``, one entry
per tensor in order) or all typed (``contents`` on each tensor): OIP forbids mixing the two
in one message. Encoding is raw by default because it is the fast path for protobuf and
the only form FP16 has. Decoding accepts either form and raises ``InvalidInput`` naming
the tensor and what is wrong; ``*_from_bytes`` raise ``DecodeError`` for bytes that are
no protobuf message at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy.typing as npt
from google.protobuf.message import DecodeError as ProtobufDecodeError  # type: ignore[import-untyped, unused-ignore]

from streamdag.errors import DecodeError, InvalidInput
from streamdag.protocol._generated.inference_pb2 import (
    InferTensorContents,
    ModelInferRequest,
    ModelInferResponse,
)
from streamdag.protocol.datatypes import Array
from streamdag.protocol.parameters import ParameterValue, write_parameters
from streamdag.protocol.tensors import (
    as_tensor,
    decode_contents,
    decode_raw,
    encode_contents,
    encode_raw,
)

__all__ = [
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "request_from_bytes",
    "requested_outputs",
    "response_from_bytes",
]

_Tensor: TypeAlias = ModelInferRequest.InferInputTensor | ModelInferResponse.InferOutputTensor


def request_from_bytes(data: bytes) -> ModelInferRequest:
    """Parse a serialized ``ModelInferRequest`` (a Kafka record value, a gRPC body)."""
    request = ModelInferRequest()
    try:
        request.ParseFromString(data)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"not an inference.ModelInferRequest: {exc}") from exc
    return request


def response_from_bytes(data: bytes) -> ModelInferResponse:
    """Parse a serialized ``ModelInferResponse``."""
    response = ModelInferResponse()
    try:
        response.ParseFromString(data)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"not an inference.ModelInferResponse: {exc}") from exc
    return response


def encode_request(
    model_name: str,
    arrays: Mapping[str, npt.ArrayLike],
    *,
    id: str = "",
    model_version: str = "",
    raw: bool = True,
    parameters: Mapping[str, ParameterValue] | None = None,
    outputs: Sequence[str] = (),
) -> ModelInferRequest:
    """Build a request with one input per array, in the mapping's order.

    ``raw=False`` asks for typed contents; a message holding an FP16 tensor is still
    encoded raw as a whole, because FP16 has no typed field and OIP forbids mixing.
    ``outputs`` names the outputs to return (empty: all of them).
    """
    request = ModelInferRequest(model_name=model_name, model_version=model_version, id=id)
    if parameters:
        write_parameters(request.parameters, parameters)
    _encode(arrays, request.inputs, request.raw_input_contents, raw=raw, kind="input")
    for name in outputs:
        request.outputs.add(name=name)
    return request


def encode_response(
    model_name: str,
    arrays: Mapping[str, npt.ArrayLike],
    *,
    id: str = "",
    model_version: str = "",
    raw: bool = True,
    parameters: Mapping[str, ParameterValue] | None = None,
) -> ModelInferResponse:
    """Build a response with one output per array; ``raw`` works as in ``encode_request``."""
    response = ModelInferResponse(model_name=model_name, model_version=model_version, id=id)
    if parameters:
        write_parameters(response.parameters, parameters)
    _encode(arrays, response.outputs, response.raw_output_contents, raw=raw, kind="output")
    return response


def decode_request(request: ModelInferRequest) -> dict[str, Array]:
    """The inputs of a request as arrays keyed by name, in request order."""
    return _decode(request.inputs, request.raw_input_contents, "raw_input_contents", "input")


def decode_response(response: ModelInferResponse) -> dict[str, Array]:
    """The outputs of a response as arrays keyed by name, in response order."""
    return _decode(response.outputs, response.raw_output_contents, "raw_output_contents", "output")


def requested_outputs(request: ModelInferRequest) -> list[str]:
    """Names of the outputs the caller asked for; empty means all of them."""
    return [output.name for output in request.outputs]


def _encode(
    arrays: Mapping[str, npt.ArrayLike],
    # Repeated protobuf containers; google.protobuf ships no type information.
    tensors: Any,
    raw_contents: Any,
    *,
    raw: bool,
    kind: str,
) -> None:
    # Convert and check every array before writing, so the message gets no half-built
    # tensor and we know whether an FP16 tensor forces the raw form.
    prepared: list[tuple[str, Array, str]] = []
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"{kind} names must be non-empty strings, got {name!r}")
        array, datatype = as_tensor(value, where=f"{kind} {name!r}")
        prepared.append((name, array, datatype))
    use_raw = raw or any(datatype == "FP16" for _, _, datatype in prepared)
    for name, array, datatype in prepared:
        where = f"{kind} {name!r}"
        tensor = tensors.add(name=name, datatype=datatype, shape=array.shape)
        if use_raw:
            raw_contents.append(encode_raw(array, datatype, where=where))
        else:
            encode_contents(array, datatype, tensor.contents, where=where)


def _decode(
    tensors: Sequence[_Tensor], raw: Sequence[bytes], raw_field: str, kind: str
) -> dict[str, Array]:
    if raw and len(raw) != len(tensors):
        raise InvalidInput(
            f"{raw_field} has {len(raw)} entries but there are {len(tensors)} {kind}s; "
            f"when used it must hold one entry per {kind}"
        )
    arrays: dict[str, Array] = {}
    for index, tensor in enumerate(tensors):
        if not tensor.name:
            raise InvalidInput(f"{kind} {index} has no name")
        where = f"{kind} {tensor.name!r}"
        if tensor.name in arrays:
            raise InvalidInput(f"{where}: appears more than once")
        shape = list(tensor.shape)
        if raw:
            if _has_contents(tensor):
                raise InvalidInput(
                    f"{where}: has typed contents while the message uses {raw_field}; "
                    "OIP allows only one of the two per message"
                )
            arrays[tensor.name] = decode_raw(raw[index], tensor.datatype, shape, where=where)
        else:
            contents: InferTensorContents = tensor.contents
            arrays[tensor.name] = decode_contents(contents, tensor.datatype, shape, where=where)
    return arrays


def _has_contents(tensor: _Tensor) -> bool:
    return bool(tensor.HasField("contents") and tensor.contents.ListFields())
