"""numpy arrays <-> ``ModelInferRequest`` / ``ModelInferResponse``.

Tensors travel either all raw (``raw_input_contents`` / ``raw_output_contents``, one entry
per tensor in order) or all typed (``contents`` on each tensor): OIP forbids mixing the two
in one message. Encoding is raw by default because it is the fast path for protobuf and
the only form FP16 has. Decoding accepts either form and raises ``InvalidInput`` naming
the tensor and what is wrong; ``*_from_bytes`` raise ``DecodeError`` for bytes that are
no protobuf message at all.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, overload

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError as ProtobufDecodeError  # type: ignore[import-untyped, unused-ignore]

from streamdag.errors import DecodeError, InvalidInput
from streamdag.protocol._generated.inference_pb2 import (
    InferTensorContents,
    ModelInferRequest,
    ModelInferResponse,
)
from streamdag.protocol.datatypes import DATATYPES, Array, datatype_of, numpy_dtype, wire_dtype
from streamdag.protocol.parameters import ParameterValue, write_parameters
from streamdag.protocol.tensors import (
    as_tensor,
    decode_contents,
    decode_raw,
    encode_contents,
    encode_raw,
)

__all__ = [
    "Columns",
    "Rows",
    "decode_request",
    "decode_requests",
    "decode_response",
    "decode_responses",
    "encode_request",
    "encode_response",
    "request_from_bytes",
    "requested_outputs",
    "response_bytes",
    "response_bytes_many",
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
    cached = _heads(arrays, model_version, names)
    if cached is None:
        # BYTES tensors vary in size with their elements, and lists or Python scalars
        # have no layout to key on: no reusable head.
        return _per_name(encode_response("", arrays, id=id, model_version=model_version), names)
    heads, convert = cached
    values: list[Any] = list(arrays.values())
    if convert is None:  # already little-endian in the wire dtype
        raws = [v.tobytes() for v in values]
    else:
        raws = [v.astype(w).tobytes() for v, w in zip(values, convert, strict=True)]
    tail: bytes = ModelInferResponse(id=id, raw_output_contents=raws).SerializeToString()
    return [head + tail for head in heads]


def response_bytes_many(
    outputs: Mapping[str, Array],
    counts: Sequence[int],
    *,
    ids: Sequence[str],
    model_version: str,
    model_names: Sequence[str] = ("",),
) -> list[list[bytes]] | None:
    """``response_bytes`` for the requests of a micro-batch at once: request k's outputs are
    rows ``sum(counts[:k])`` to ``sum(counts[:k + 1])`` of every array of ``outputs``, and
    its id is ``ids[k]``. The same bytes as ``response_bytes`` of each request's rows; each
    tensor is converted and copied out once for the whole batch, each request's contents
    are slices of that copy.

    None when the outputs are not all fixed-size arrays with one row per request row
    (BYTES tensors, Python lists): encode such requests one by one.
    """
    names = tuple(model_names)
    total = sum(counts)
    columns: list[memoryview] = []
    row_sizes: list[int] = []
    for value in outputs.values():
        if not isinstance(value, np.ndarray) or value.ndim == 0 or value.shape[0] != total:
            return None
        try:
            datatype = datatype_of(value)
        except InvalidInput:  # no OIP datatype: each request reports it
            return None
        if datatype == "BYTES":
            return None
        wire = _FIXED[datatype][0]
        column = value if value.dtype == wire else value.astype(wire)
        columns.append(memoryview(column.tobytes()))
        row_sizes.append(column.itemsize * math.prod(value.shape[1:]))
    # A message is the concatenation of its fields, each serialized alone: the metadata
    # part, then the id, then each tensor's raw contents. The bytes that frame the id and
    # the contents depend only on their lengths; protobuf serializes them once per length.
    out: list[list[bytes]] = []
    heads_of: dict[int, list[bytes]] = {}
    start = 0
    for rid, rows in zip(ids, counts, strict=True):
        heads = heads_of.get(rows)
        if heads is None:
            heads = heads_of[rows] = _heads_of_rows(outputs, rows, model_version, names)
        end = start + rows
        encoded = rid.encode()
        parts: list[bytes | memoryview] = [b"", _frame(_ID, len(encoded)), encoded]
        for buffer, size in zip(columns, row_sizes, strict=True):
            contents = buffer[start * size : end * size]
            parts += (_frame(_RAW_OUTPUT, len(contents)), contents)
        values = []
        for head in heads:
            parts[0] = head
            values.append(b"".join(parts))
        out.append(values)
        start = end
    return out


_ID = "id"
_RAW_OUTPUT = "raw_output_contents"
_FRAMES: dict[tuple[str, int], bytes] = {}


def _frame(field: str, length: int) -> bytes:
    """The bytes before a value of ``length`` bytes in a serialized ``ModelInferResponse``
    whose only field is ``field`` (the id, or one raw contents entry): its tag and length.
    """
    found = _FRAMES.get((field, length))
    if found is None:
        filler = "x" * length if field == _ID else b"x" * length
        kwargs: dict[str, Any] = {field: filler if field == _ID else [filler]}
        serialized = ModelInferResponse(**kwargs).SerializeToString()
        found = serialized[: len(serialized) - length]
        if len(_FRAMES) >= _MAX_HEADS:
            _FRAMES.clear()
        _FRAMES[(field, length)] = found
    return found


def _heads(
    arrays: Mapping[str, npt.ArrayLike], model_version: str, names: tuple[str, ...]
) -> tuple[list[bytes], list[np.dtype[Any]] | None] | None:
    """The serialized metadata parts of a response with ``arrays`` as outputs, one per
    name, and the wire dtypes when some array is not in its wire dtype already; None for
    outputs without a reusable metadata part (BYTES tensors, lists, Python scalars)."""
    try:
        key = (model_version, names, *[(n, v.dtype, v.shape) for n, v in arrays.items()])  # type: ignore[union-attr]
    except AttributeError:  # not arrays
        return None
    if key in _HEADS:
        return _HEADS[key]
    datatypes = [datatype_of(v) for v in arrays.values()]  # type: ignore[arg-type]
    if "BYTES" in datatypes:
        cached = None  # elements of varying size
    else:
        response = encode_response("", arrays, id="", model_version=model_version)
        # The message without id and contents starts every response like it.
        wires = [wire_dtype(datatype) for datatype in datatypes]
        native = all(w == v.dtype for w, v in zip(wires, arrays.values(), strict=True))  # type: ignore[union-attr]
        del response.raw_output_contents[:]
        cached = _per_name(response, names), None if native else wires
    if len(_HEADS) >= _MAX_HEADS:
        _HEADS.clear()  # e.g. outputs of varying length: keep the cache bounded
    _HEADS[key] = cached
    return cached


def _heads_of_rows(
    outputs: Mapping[str, Array],
    rows: int,
    model_version: str,
    names: tuple[str, ...],
) -> list[bytes]:
    """The metadata parts of ``outputs`` cut to ``rows`` rows (fixed-size arrays)."""
    sample = {name: value[:rows] for name, value in outputs.items()}
    found = _heads(sample, model_version, names)
    assert found is not None, "fixed-size arrays always have a metadata part"
    return found[0]


def _per_name(response: ModelInferResponse, names: Sequence[str]) -> list[bytes]:
    """``response`` serialized once with each model name."""
    out = []
    for name in names:
        response.model_name = name
        out.append(response.SerializeToString())
    return out


# Serialized metadata parts per (version, model names, output layout), and the wire dtypes
# when some array is not already in its wire dtype, for response_bytes.
# None: a layout with BYTES tensors, which has no reusable metadata part.
_HEADS: dict[tuple[object, ...], tuple[list[bytes], list[np.dtype[Any]] | None] | None] = {}
_MAX_HEADS = 4096


def decode_request(request: ModelInferRequest) -> dict[str, Array]:
    """The inputs of a request as arrays keyed by name, in request order."""
    return _decode(request.inputs, request.raw_input_contents, "raw_input_contents", "input")


def decode_response(response: ModelInferResponse) -> dict[str, Array]:
    """The outputs of a response as arrays keyed by name, in response order."""
    return _decode(response.outputs, response.raw_output_contents, "raw_output_contents", "output")


@overload
def decode_requests(
    requests: Sequence[ModelInferRequest], *, grouped: Literal[False] = False
) -> list[dict[str, Array] | InvalidInput]: ...
@overload
def decode_requests(
    requests: Sequence[ModelInferRequest], *, grouped: bool
) -> list[dict[str, Array] | InvalidInput | Rows]: ...
def decode_requests(
    requests: Sequence[ModelInferRequest], *, grouped: bool = False
) -> list[dict[str, Array] | InvalidInput] | list[dict[str, Array] | InvalidInput | Rows]:
    """``decode_request`` for many requests at once: one array per tensor, or the
    ``InvalidInput`` that ``decode_request`` would raise, in order.

    Requests with the same raw layout (tensor names, datatypes and shapes after the first
    axis) are decoded together, with one numpy conversion per tensor; each request's
    arrays are then row slices of one array. Anything else is decoded one by one.
    ``grouped``: such requests come back as ``Rows`` of their group, not as dicts.
    """
    return _decode_many(
        [(r.inputs, r.raw_input_contents) for r in requests],
        "raw_input_contents",
        "input",
        grouped,
    )


@overload
def decode_responses(
    responses: Sequence[ModelInferResponse], *, grouped: Literal[False] = False
) -> list[dict[str, Array] | InvalidInput]: ...
@overload
def decode_responses(
    responses: Sequence[ModelInferResponse], *, grouped: bool
) -> list[dict[str, Array] | InvalidInput | Rows]: ...
def decode_responses(
    responses: Sequence[ModelInferResponse], *, grouped: bool = False
) -> list[dict[str, Array] | InvalidInput] | list[dict[str, Array] | InvalidInput | Rows]:
    """``decode_requests`` for responses."""
    return _decode_many(
        [(r.outputs, r.raw_output_contents) for r in responses],
        "raw_output_contents",
        "output",
        grouped,
    )


@dataclass(frozen=True, slots=True, eq=False)
class Columns:
    """The tensors of several messages with one layout, decoded together: the rows of
    member k are ``bounds[k]`` to ``bounds[k + 1]`` of every array."""

    arrays: dict[str, Array]
    bounds: tuple[int, ...]

    @property
    def members(self) -> int:
        return len(self.bounds) - 1

    def counts(self) -> list[int]:
        """The rows of each member."""
        return [end - start for start, end in itertools.pairwise(self.bounds)]


@dataclass(slots=True)
class Rows:
    """One message's tensors as rows of its group's ``Columns``."""

    columns: Columns
    member: int

    def arrays(self) -> dict[str, Array]:
        start, end = self.columns.bounds[self.member], self.columns.bounds[self.member + 1]
        return {name: array[start:end] for name, array in self.columns.arrays.items()}


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
    messages: Sequence[tuple[Sequence[_Tensor], Sequence[bytes]]],
    raw_field: str,
    kind: str,
    grouped: bool = False,
) -> list[dict[str, Array] | InvalidInput | Rows]:
    results: list[dict[str, Array] | InvalidInput | Rows] = [{}] * len(messages)  # replaced

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
            # Each read of a protobuf bytes field makes a new copy: take them once.
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
        if grouped:
            bounds = [0]
            for _, rows, _ in fitting:
                bounds.append(bounds[-1] + rows)
            group = Columns(dict(columns), tuple(bounds))
            for k, (index, _, _) in enumerate(fitting):
                results[index] = Rows(group, k)
            continue
        start = 0
        for index, rows, _ in fitting:
            end = start + rows
            results[index] = {name: array[start:end] for name, array in columns}
            start = end
    return results
