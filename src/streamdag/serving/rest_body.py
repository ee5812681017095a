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

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from streamdag.errors import DecodeError, InvalidInput
from streamdag.protocol import (
    InferParameter,
    ModelInferRequest,
    ModelInferResponse,
    decode_response,
    parameter_value,
    request_from_json,
    response_to_json,
    write_parameters,
)
from streamdag.protocol.datatypes import element_count
from streamdag.protocol.tensors import encode_raw

__all__ = ["HEADER_LENGTH", "OutputForm", "dumps", "parse_infer_request", "render_infer_response"]

HEADER_LENGTH = "inference-header-content-length"
_SIZE = "binary_data_size"
# Elements per json.dumps call in a reply's long data lists: about 10 ms of work each.
_SLICE = 16_384


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


def dumps(body: Any) -> bytes:
    """JSON bytes; NaN and infinities are written as literals, as ``response_to_json`` expects."""
    return json.dumps(body, allow_nan=True, separators=(",", ":")).encode()


def parse_infer_request(
    body: bytes, header_length: str | None, *, model_name: str, model_version: str = ""
) -> tuple[ModelInferRequest, OutputForm]:
    """The request a REST body holds, and the form its outputs should take."""
    if header_length is None:
        request = request_from_json(body, model_name=model_name, model_version=model_version)
    else:
        request = _parse_binary(body, header_length, model_name, model_version)
    return request, _take_output_form(request)


def render_infer_response(
    response: ModelInferResponse, form: OutputForm
) -> tuple[bytes, int | None]:
    """The REST body of a response and, when it carries binary data, its JSON header length."""
    binary = {t.name for t in response.outputs if form.binary(t.name)}
    if not binary:
        return _dumps_response(response_to_json(response)), None
    body = response_to_json(_subset(response, binary))
    as_json = {tensor["name"]: tensor for tensor in body["outputs"]}
    arrays = None if response.raw_output_contents else decode_response(response)
    chunks: list[bytes] = []
    outputs: list[dict[str, Any]] = []
    for index, tensor in enumerate(response.outputs):
        if tensor.name not in binary:
            outputs.append(as_json[tensor.name])
            continue
        if arrays is None:
            chunk = response.raw_output_contents[index]
        else:
            chunk = encode_raw(
                arrays[tensor.name], tensor.datatype, where=f"output {tensor.name!r}"
            )
        params: dict[str, Any] = {key: parameter_value(p) for key, p in tensor.parameters.items()}
        params[_SIZE] = len(chunk)
        shape = list(tensor.shape)
        outputs.append(
            {"name": tensor.name, "datatype": tensor.datatype, "shape": shape, "parameters": params}
        )
        chunks.append(chunk)
    body["outputs"] = outputs
    header = _dumps_response(body)
    return header + b"".join(chunks), len(header)


def _dumps_response(body: dict[str, Any]) -> bytes:
    """``dumps(body)`` for a response body, with long ``data`` lists written in slices.

    One ``json.dumps`` call holds the GIL throughout, seconds for millions of numbers,
    and so would stall the event loop even from a worker thread. The body's key order
    (``outputs`` last, ``data`` last in each) lets the pieces be joined into the same
    bytes.
    """
    outputs: list[dict[str, Any]] = body["outputs"]
    if all(len(tensor.get("data", ())) <= _SLICE for tensor in outputs):
        return dumps(body)
    head = dumps({key: value for key, value in body.items() if key != "outputs"})
    parts = [head[:-1], b',"outputs":[' if len(head) > 2 else b'"outputs":[']
    for index, tensor in enumerate(outputs):
        if index:
            parts.append(b",")
        if "data" not in tensor:
            parts.append(dumps(tensor))
            continue
        rest = dumps({key: value for key, value in tensor.items() if key != "data"})
        parts += [rest[:-1], b',"data":', _dumps_list(tensor["data"]), b"}"]
    parts.append(b"]}")
    return b"".join(parts)


def _dumps_list(items: list[Any]) -> bytes:
    slices = (dumps(items[i : i + _SLICE])[1:-1] for i in range(0, len(items), _SLICE))
    return b"[" + b",".join(slices) + b"]"


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


def _subset(response: ModelInferResponse, drop: set[str]) -> ModelInferResponse:
    """A copy of ``response`` without the outputs named in ``drop``."""
    subset = ModelInferResponse()
    subset.CopyFrom(response)
    del subset.outputs[:]
    del subset.raw_output_contents[:]
    for index, tensor in enumerate(response.outputs):
        if tensor.name in drop:
            continue
        subset.outputs.add().CopyFrom(tensor)
        if response.raw_output_contents:
            subset.raw_output_contents.append(response.raw_output_contents[index])
    return subset
