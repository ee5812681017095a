"""REST inference bodies: OIP JSON, plus Triton's binary tensor data extension.

With the extension (what ``tritonclient.http`` sends by default) a body is a JSON header
of ``Inference-Header-Content-Length`` bytes followed by the raw bytes of the inputs whose
``parameters`` hold ``binary_data_size``, in input order. Raw bytes are the OIP raw form
(little-endian; BYTES as 4-byte length + data per element), so they go into
``raw_input_contents`` unchanged. Outputs are sent the same way when the request asks:
``parameters.binary_data_output`` for all of them, ``outputs[i].parameters.binary_data``
for one. These transport parameters are removed before the request goes further.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from streamdag.errors import DecodeError, InvalidInput
from streamdag.protocol import (
    DATATYPES,
    Array,
    InferParameter,
    ModelInferRequest,
    ModelInferResponse,
    decode_response,
    parameter_value,
    read_parameters,
    request_arrays_from_json,
    request_from_json,
    write_parameters,
)
from streamdag.protocol.datatypes import element_count, wire_dtype
from streamdag.protocol.tensors import decode_raw, encode_raw
from streamdag.serving.rest_json import dumps, header_dumps, loads, tensor_data

__all__ = ["HEADER_LENGTH", "OutputForm", "dumps", "parse_infer_request", "render_infer_response"]

HEADER_LENGTH = "inference-header-content-length"
_SIZE = "binary_data_size"
# The JSON form's marker of base64 BYTES elements (see protocol.jsonform).
_CONTENT_TYPE = "content_type"
_BASE64 = "base64"
# Raw contents viewed as they are: BOOL bytes are normalized and BYTES split, so not those.
_VIEWABLE = frozenset(DATATYPES) - {"BOOL", "BYTES"}


@dataclass(frozen=True)
class OutputForm:
    """Which outputs the caller wants as binary data rather than JSON lists."""

    default: bool = False
    per_output: dict[str, bool] = field(default_factory=dict)

    def binary(self, name: str) -> bool:
        return self.per_output.get(name, self.default)


class _BinaryInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    shape: list[StrictInt]
    datatype: StrictStr
    parameters: dict[str, Any]


def parse_infer_request(
    body: bytes, header_length: str | None, *, model_name: str, model_version: str = ""
) -> tuple[ModelInferRequest, OutputForm, dict[str, Array] | None]:
    """The request a REST body holds, the form its outputs should take, and for a JSON
    body the arrays its inputs hold (those the request's raw contents encode), so that
    they need not be decoded again."""
    if header_length is None:
        parsed = loads(body)
        request, arrays = request_arrays_from_json(
            parsed if isinstance(parsed, dict) else body,
            model_name=model_name,
            model_version=model_version,
        )
        return request, _take_output_form(request), arrays
    request = _parse_binary(body, header_length, model_name, model_version)
    return request, _take_output_form(request), None


def render_infer_response(
    response: ModelInferResponse, form: OutputForm
) -> tuple[bytes, int | None]:
    """The REST body of a response and, when it carries binary data, its JSON header length.

    Each output's data is written from a view of the response's raw bytes, not from
    decoded copies or a list of Python numbers; a header is assembled around them in the
    key order of ``response_to_json``.
    """
    raw = response.raw_output_contents
    arrays = None if raw and len(raw) == len(response.outputs) else decode_response(response)
    head: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version:
        head["model_version"] = response.model_version
    if response.id:
        head["id"] = response.id
    if response.parameters:
        head["parameters"] = read_parameters(response.parameters)
    outputs: list[bytes] = []
    chunks: list[bytes] = []
    for index, tensor in enumerate(response.outputs):
        meta: dict[str, Any] = {
            "name": tensor.name,
            "shape": list(tensor.shape),
            "datatype": tensor.datatype,
        }
        params = read_parameters(tensor.parameters) if tensor.parameters else {}
        if form.binary(tensor.name):
            chunk = (
                raw[index]
                if arrays is None
                else encode_raw(
                    arrays[tensor.name], tensor.datatype, where=f"output {tensor.name!r}"
                )
            )
            meta["parameters"] = {**params, _SIZE: len(chunk)}
            outputs.append(header_dumps(meta))
            chunks.append(chunk)
            continue
        values = _values(tensor, raw[index]) if arrays is None else arrays[tensor.name]
        data, is_base64 = tensor_data(values, tensor.datatype)
        if is_base64:
            params[_CONTENT_TYPE] = _BASE64
        if params:
            meta["parameters"] = params
        outputs.append(header_dumps(meta)[:-1] + b',"data":' + data + b"}")
    header = header_dumps(head)[:-1] + b',"outputs":[' + b",".join(outputs) + b"]}"
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)


def _values(tensor: ModelInferResponse.InferOutputTensor, raw: bytes) -> Array:
    """An output's values from its raw contents: for fixed-size numbers a read-only view
    of the bytes (little-endian, as orjson reads them on any host); else decoded."""
    where = f"output {tensor.name!r}"
    shape = list(tensor.shape)
    if tensor.datatype in _VIEWABLE:
        wire = wire_dtype(tensor.datatype)
        if len(raw) == element_count(shape, where=where) * wire.itemsize:
            return np.frombuffer(raw, dtype=wire)
    return decode_raw(raw, tensor.datatype, shape, where=where)


def _parse_binary(
    body: bytes, header_length: str, model_name: str, model_version: str
) -> ModelInferRequest:
    try:
        length = int(header_length)
    except ValueError:
        raise InvalidInput(
            f"Inference-Header-Content-Length: {header_length!r} is not a number of bytes"
        ) from None
    if not 0 <= length <= len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length: {length} is outside the body of {len(body)} bytes"
        )
    header = loads(body[:length])
    if header is None:  # not JSON to orjson: NaN literals, or not JSON at all
        try:
            header = json.loads(body[:length])
        except (ValueError, UnicodeDecodeError) as exc:
            raise DecodeError(f"request body is not valid JSON: {exc}") from exc
    inputs = header.get("inputs") if isinstance(header, dict) else None
    if not isinstance(inputs, list):
        # Not the shape of a request: let the JSON form's validation say what is wrong.
        return request_from_json(header, model_name=model_name, model_version=model_version)
    binary = {i: _binary_input(i, t) for i, t in enumerate(inputs) if _has_size(t)}
    plain = [i for i in range(len(inputs)) if i not in binary]
    try:
        parsed = request_from_json(
            {**header, "inputs": [inputs[i] for i in plain]},
            model_name=model_name,
            model_version=model_version,
        )
    except InvalidInput as exc:
        raise type(exc)(_renumber(str(exc), plain)) from None
    tail = memoryview(body)[length:]
    declared = sum(size for _, size in binary.values())
    if declared != len(tail):
        raise InvalidInput(
            f"binary data: the inputs declare {declared} bytes (binary_data_size) but "
            f"{len(tail)} follow the JSON header"
        )
    request = ModelInferRequest()
    request.CopyFrom(parsed)
    del request.inputs[:]
    del request.raw_input_contents[:]
    from_json = iter(zip(parsed.inputs, parsed.raw_input_contents, strict=True))
    offset = 0
    for index in range(len(inputs)):
        if index not in binary:
            tensor, raw = next(from_json)
            request.inputs.add().CopyFrom(tensor)
            request.raw_input_contents.append(raw)
            continue
        spec, size = binary[index]
        added = request.inputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
        params = {k: v for k, v in spec.parameters.items() if k != _SIZE}
        write_parameters(added.parameters, params, where=f"inputs[{index}].parameters")
        request.raw_input_contents.append(bytes(tail[offset : offset + size]))
        offset += size
    return request


def _has_size(tensor: object) -> bool:
    params = tensor.get("parameters") if isinstance(tensor, dict) else None
    return isinstance(params, dict) and _SIZE in params


def _binary_input(index: int, tensor: dict[str, Any]) -> tuple[_BinaryInput, int]:
    where = f"inputs[{index}]"
    if "data" in tensor:
        raise InvalidInput(f"{where}: has both data and parameters.{_SIZE}; send one of them")
    try:
        spec = _BinaryInput.model_validate(tensor)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        raise InvalidInput(f"{where}{loc}: {first['msg']}") from None
    element_count(spec.shape, where=f"{where}.shape")
    size = spec.parameters[_SIZE]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidInput(f"{where}.parameters.{_SIZE}: must be a byte count, got {size!r}")
    return spec, size


def _renumber(message: str, plain: list[int]) -> str:
    # The JSON inputs were validated without the binary ones between them; give an error's
    # "inputs[k]" the index the caller used.
    def fix(match: re.Match[str]) -> str:
        k = int(match[1])
        return f"inputs[{plain[k]}]" if k < len(plain) else match[0]

    return re.sub(r"^inputs\[(\d+)\]", fix, message)


def _take_output_form(request: ModelInferRequest) -> OutputForm:
    default = _pop_flag(request.parameters, "binary_data_output", "parameters")
    per_output: dict[str, bool] = {}
    for index, output in enumerate(request.outputs):
        flag = _pop_flag(output.parameters, "binary_data", f"outputs[{index}].parameters")
        if flag is not None:
            per_output[output.name] = flag
    return OutputForm(bool(default), per_output)


def _pop_flag(params: Any, key: str, where: str) -> bool | None:
    if key not in params:
        return None
    param: InferParameter = params[key]
    value = parameter_value(param, name=f"{where}.{key}")
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}.{key}: must be true or false, got {value!r}")
    del params[key]
    return value
