"""numpy arrays <-> ``ModelInferRequest`` / ``ModelInferResponse``.

Tensors travel either all raw (``raw_input_contents`` / ``raw_output_contents``, one entry
per tensor in order) or all typed (``contents`` on each tensor): OIP forbids mixing the two
in one message. Encoding is raw by default because it is the fast path for protobuf and
the only form FP16 has. Decoding accepts either form and raises ``InvalidInput`` naming
the tensor and what is wrong; ``*_from_bytes`` raise ``DecodeError`` for bytes that are
no protobuf message at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError as ProtobufDecodeError  # type: ignore[import-untyped, unused-ignore]

from streamdag.errors import DecodeError, InvalidInput
from streamdag.protocol._generated.inference_pb2 import (
    InferTensorContents,
    ModelInferRequest,
    ModelInferResponse,
)
from streamdag.protocol.datatypes import DATATYPES, Array, numpy_dtype, wire_dtype
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
    "decode_requests",
    "decode_response",
    "decode_responses",
    "encode_request",
    "encode_response",
    "request_from_bytes",
    "requested_outputs",
    "response_bytes",
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


def response_bytes(
    arrays: Mapping[str, npt.ArrayLike],
    *,
    id: str,
    model_version: str,
    model_names: Sequence[str] = ("",),
) -> list[bytes]:
    """``encode_response(name, arrays, id=id, model_version=model_version)`` serialized,
    for each name of ``model_names``.

    The metadata part of each message (model name, version, tensor names, datatypes and
    shapes) is serialized once per layout and reused; each call serializes the id and raw
    contents once for all names. A message is its metadata part followed by that shared
    part: protobuf parses serialized messages one after the other as one message.
    """
    names = tuple(model_names)
    layout: tuple[object, ...] | None
    try:
        key = (model_version, names, *[(n, v.dtype, v.shape) for n, v in arrays.items()])  # type: ignore[union-attr]
        cached = _HEADS.get(key)
        layout = key
    except AttributeError:  # not arrays (lists, Python scalars): the general path
        layout = cached = None
    if cached is None:
        response = encode_response("", arrays, id=id, model_version=model_version)
        if layout is None or any(tensor.datatype == "BYTES" for tensor in response.outputs):
            # BYTES tensors vary in size with their elements: no reusable head.
            return _per_name(response, names)
        # The message without id and contents starts every response like it.
        wires = [wire_dtype(tensor.datatype) for tensor in response.outputs]
        native = all(w == v.dtype for w, v in zip(wires, arrays.values(), strict=True))  # type: ignore[union-attr]
        response.id = ""
        del response.raw_output_contents[:]
        cached = _per_name(response, names), None if native else wires
        if len(_HEADS) >= _MAX_HEADS:
            _HEADS.clear()  # e.g. outputs of varying length: keep the cache bounded
        _HEADS[layout] = cached
    heads, convert = cached
    values: list[Any] = list(arrays.values())
    if convert is None:  # already little-endian in the wire dtype
        raws = [v.tobytes() for v in values]
    else:
        raws = [v.astype(w).tobytes() for v, w in zip(values, convert, strict=True)]
    tail: bytes = ModelInferResponse(id=id, raw_output_contents=raws).SerializeToString()
    return [head + tail for head in heads]


def _per_name(response: ModelInferResponse, names: Sequence[str]) -> list[bytes]:
    """``response`` serialized once with each model name."""
    out = []
    for name in names:
        response.model_name = name
        out.append(response.SerializeToString())
    return out


# Serialized metadata parts per (version, model names, output layout), and the wire dtypes
# when some array is not already in its wire dtype, for response_bytes.
_HEADS: dict[tuple[object, ...], tuple[list[bytes], list[np.dtype[Any]] | None]] = {}
_MAX_HEADS = 4096


def decode_request(request: ModelInferRequest) -> dict[str, Array]:
    """The inputs of a request as arrays keyed by name, in request order."""
    return _decode(request.inputs, request.raw_input_contents, "raw_input_contents", "input")


def decode_response(response: ModelInferResponse) -> dict[str, Array]:
    """The outputs of a response as arrays keyed by name, in response order."""
    return _decode(response.outputs, response.raw_output_contents, "raw_output_contents", "output")


def decode_requests(requests: Sequence[ModelInferRequest]) -> list[dict[str, Array] | InvalidInput]:
    """``decode_request`` for many requests at once: one array per tensor, or the
    ``InvalidInput`` that ``decode_request`` would raise, in order.

    Requests with the same raw layout (tensor names, datatypes and shapes after the first
    axis) are decoded together, with one numpy conversion per tensor; each request's
    arrays are then row slices of one array. Anything else is decoded one by one.
    """
    return _decode_many(
        [(r.inputs, r.raw_input_contents) for r in requests], "raw_input_contents", "input"
    )


def decode_responses(
    responses: Sequence[ModelInferResponse],
) -> list[dict[str, Array] | InvalidInput]:
    """``decode_requests`` for responses."""
    return _decode_many(
        [(r.outputs, r.raw_output_contents) for r in responses], "raw_output_contents", "output"
    )


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


# Datatypes whose raw contents decode with one numpy conversion: fixed-size elements.
_FIXED: dict[str, tuple[np.dtype[Any], np.dtype[Any]]] = {
    name: (wire_dtype(name), numpy_dtype(name)) for name in DATATYPES if name != "BYTES"
}

_Layout: TypeAlias = tuple[tuple[str, str, tuple[int, ...]], ...]


def _raw_layout(tensors: Sequence[_Tensor], raw: Sequence[bytes]) -> tuple[_Layout, int] | None:
    """The layout and row count of a message whose tensors are all raw, fixed-size and
    share their first axis; None for anything else (decoded one by one)."""
    if not raw or len(raw) != len(tensors):
        return None
    layout = []
    rows = -1
    for tensor in tensors:
        shape = tuple(tensor.shape)
        if not shape or tensor.datatype not in _FIXED or tensor.HasField("contents"):
            return None
        if rows < 0:
            rows = shape[0]
        elif shape[0] != rows:
            return None
        if min(shape) <= 0:  # empty or invalid: the one-by-one path checks the shape
            return None
        layout.append((tensor.name, tensor.datatype, shape[1:]))
    names = {name for name, _, _ in layout}
    if "" in names or len(names) != len(layout):
        return None
    return tuple(layout), rows


def _decode_many(
    messages: Sequence[tuple[Sequence[_Tensor], Sequence[bytes]]], raw_field: str, kind: str
) -> list[dict[str, Array] | InvalidInput]:
    results: list[dict[str, Array] | InvalidInput] = [{}] * len(messages)  # all replaced

    def one_by_one(index: int) -> None:
        tensors, raw = messages[index]
        try:
            results[index] = _decode(tensors, raw, raw_field, kind)
        except InvalidInput as exc:
            results[index] = exc

    # Messages of a batch mostly share their tensor metadata: comparing it with the last
    # layout found (one call into protobuf) is cheaper than reading every field again.
    groups: dict[_Layout, list[tuple[int, int, list[bytes]]]] = {}
    last_tensors: Sequence[_Tensor] | None = None
    last: tuple[_Layout, int] | None = None
    for index, (tensors, raw) in enumerate(messages):
        if last is not None and len(raw) == len(last[0]) and tensors == last_tensors:
            found: tuple[_Layout, int] | None = last
        else:
            found = _raw_layout(tensors, raw)
            if found is not None:
                last_tensors, last = tensors, found
        if found is None:
            one_by_one(index)
        else:
            groups.setdefault(found[0], []).append((index, found[1], list(raw)))
    for layout, members in groups.items():
        row_bytes = [math.prod(tail) * _FIXED[datatype][0].itemsize for _, datatype, tail in layout]
        expected: dict[int, list[int]] = {}
        fitting = []
        for member in members:
            rows, raw = member[1], member[2]
            sizes = expected.get(rows)
            if sizes is None:
                sizes = expected[rows] = [rows * size for size in row_bytes]
            if list(map(len, raw)) == sizes:
                fitting.append(member)
            else:  # byte counts that do not fit the shape: the error comes one by one
                one_by_one(member[0])
        if not fitting:
            continue
        total = sum(member[1] for member in fitting)
        columns: list[tuple[str, Array]] = []
        for j, (name, datatype, tail) in enumerate(layout):
            wire, native = _FIXED[datatype]
            # A bytearray makes the array writable without another copy.
            data = bytearray().join([member[2][j] for member in fitting])
            flat = np.frombuffer(data, dtype=wire)
            if datatype == "BOOL":
                array = flat != 0  # any non-zero byte is true, as in decode_raw
            else:
                array = flat if wire == native else flat.astype(native)
            columns.append((name, array.reshape((total, *tail))))
        start = 0
        for index, rows, _ in fitting:
            end = start + rows
            results[index] = {name: array[start:end] for name, array in columns}
            start = end
    return results
