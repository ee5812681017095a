"""The OIP REST JSON form <-> ``ModelInferRequest`` / ``ModelInferResponse``.

Request body: ``{"id", "parameters", "inputs": [{"name", "shape", "datatype",
"parameters", "data"}], "outputs": [{"name", "parameters"}]}``; the model name and
version come from the URL, not the body. Response body: ``{"model_name",
"model_version", "id", "parameters", "outputs": [{"name", "shape", "datatype",
"parameters", "data"}]}``. ``data`` is row-major, flat or nested.

BYTES elements are JSON strings holding the UTF-8 text of the bytes. JSON cannot carry
arbitrary bytes, so a BYTES tensor with any element that is not valid UTF-8 is written
with every element base64-encoded and the tensor parameter ``"content_type": "base64"``
(the marker MLServer uses); bodies carrying that marker are base64-decoded when read.
The marker belongs to the JSON form only: protobuf messages always hold the real bytes.

Floats are written as JSON numbers; NaN and infinities become the ``NaN``/``Infinity``
literals that Python's and most JSON parsers accept, so serialize with ``allow_nan=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias, TypeVar

from pydantic import BaseModel, StrictInt, StrictStr, ValidationError

from streamdag.errors import DecodeError, InvalidInput
from streamdag.protocol._generated.inference_pb2 import ModelInferRequest, ModelInferResponse
from streamdag.protocol.codec import (
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from streamdag.protocol.datatypes import Array, element_count, numpy_dtype
from streamdag.protocol.jsondata import array_from_json, array_to_json
from streamdag.protocol.parameters import read_parameters, write_parameters

__all__ = [
    "error_body",
    "error_from_json",
    "request_arrays_from_json",
    "request_from_json",
    "request_to_json",
    "response_from_json",
    "response_to_json",
]

JSONBody: TypeAlias = bytes | str | Mapping[str, Any]
"""A body as received (bytes or text) or already parsed into a dict."""

_CONTENT_TYPE = "content_type"
_BASE64 = "base64"


class _Tensor(BaseModel):
    name: StrictStr
    shape: list[StrictInt]
    datatype: StrictStr
    parameters: dict[str, Any] | None = None
    data: list[Any]


class _RequestedOutput(BaseModel):
    name: StrictStr
    parameters: dict[str, Any] | None = None


class _Request(BaseModel):
    id: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[_Tensor]
    outputs: list[_RequestedOutput] | None = None


class _Response(BaseModel):
    model_name: StrictStr
    model_version: StrictStr | None = None
    id: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[_Tensor]


_Body = TypeVar("_Body", bound=BaseModel)


def request_from_json(
    body: JSONBody, *, model_name: str = "", model_version: str = "", raw: bool = True
) -> ModelInferRequest:
    """A ``ModelInferRequest`` from a REST request body (bytes, text or parsed JSON).

    The body names no model: REST takes it from the URL, so pass it as ``model_name``
    (a record on a pipeline's inputs topic may leave it empty). Raises ``DecodeError`` if
    the body is not JSON and ``InvalidInput`` naming the field for anything else that is
    wrong. ``raw`` picks the protobuf form of the tensors.
    """
    request, _ = _request_and_arrays(body, model_name, model_version, raw)
    return request


def request_arrays_from_json(
    body: JSONBody, *, model_name: str = "", model_version: str = ""
) -> tuple[ModelInferRequest, dict[str, Array]]:
    """``request_from_json`` (raw contents), and the arrays those contents hold: a server
    that runs the request at once need not decode them again."""
    return _request_and_arrays(body, model_name, model_version, True)


def _request_and_arrays(
    body: JSONBody, model_name: str, model_version: str, raw: bool
) -> tuple[ModelInferRequest, dict[str, Array]]:
    parsed = _validate(_Request, body, "request")
    arrays = _arrays(parsed.inputs, "inputs", "input")
    request = encode_request(
        model_name, arrays, id=parsed.id or "", model_version=model_version, raw=raw
    )
    write_parameters(request.parameters, parsed.parameters or {})
    for index, (tensor, source) in enumerate(zip(request.inputs, parsed.inputs, strict=True)):
        write_parameters(
            tensor.parameters, _tensor_parameters(source), where=f"inputs[{index}].parameters"
        )
    for index, output in enumerate(parsed.outputs or ()):
        requested = request.outputs.add(name=output.name)
        write_parameters(
            requested.parameters, output.parameters or {}, where=f"outputs[{index}].parameters"
        )
    return request, arrays


def response_from_json(body: JSONBody, *, raw: bool = True) -> ModelInferResponse:
    """A ``ModelInferResponse`` from a REST response body; errors as ``request_from_json``."""
    parsed = _validate(_Response, body, "response")
    arrays = _arrays(parsed.outputs, "outputs", "output")
    response = encode_response(
        parsed.model_name,
        arrays,
        id=parsed.id or "",
        model_version=parsed.model_version or "",
        raw=raw,
    )
    write_parameters(response.parameters, parsed.parameters or {})
    for index, (tensor, source) in enumerate(zip(response.outputs, parsed.outputs, strict=True)):
        write_parameters(
            tensor.parameters, _tensor_parameters(source), where=f"outputs[{index}].parameters"
        )
    return response


def request_to_json(request: ModelInferRequest) -> dict[str, Any]:
    """The REST body for a request, ready for ``json.dumps``; ``data`` is flat."""
    arrays = decode_request(request)
    body: dict[str, Any] = {}
    if request.id:
        body["id"] = request.id
    if request.parameters:
        body["parameters"] = read_parameters(request.parameters)
    body["inputs"] = [_tensor_json(tensor, arrays[tensor.name]) for tensor in request.inputs]
    if request.outputs:
        body["outputs"] = [_output_json(output) for output in request.outputs]
    return body


def response_to_json(response: ModelInferResponse) -> dict[str, Any]:
    """The REST body for a response, ready for ``json.dumps``; ``data`` is flat."""
    arrays = decode_response(response)
    body: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version:
        body["model_version"] = response.model_version
    if response.id:
        body["id"] = response.id
    if response.parameters:
        body["parameters"] = read_parameters(response.parameters)
    body["outputs"] = [_tensor_json(tensor, arrays[tensor.name]) for tensor in response.outputs]
    return body


def error_body(error: str | BaseException) -> dict[str, str]:
    """The OIP error body, ``{"error": message}``."""
    return {"error": str(error)}


def error_from_json(body: bytes | str) -> str:
    """The message of an OIP error body, or the body's text if it is not one.

    Proxies and load balancers answer with HTML or plain text, which is still the best
    description of what went wrong, so nothing here raises.
    """
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        parsed = _ErrorBody.model_validate_json(text)
    except ValidationError:
        return text.strip()
    return parsed.error


class _ErrorBody(BaseModel):
    error: StrictStr


def _validate(model: type[_Body], body: JSONBody, what: str) -> _Body:
    try:
        if isinstance(body, bytes | str):
            return model.model_validate_json(body)
        return model.model_validate(body)
    except ValidationError as exc:
        raise _translate(exc, what) from None


def _translate(exc: ValidationError, what: str) -> InvalidInput:
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return DecodeError(f"{what} body is not valid JSON: {first['msg']}")
    path = _path(first["loc"]) or f"{what} body"
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    message = _JSON_WORDS.get(first["type"], first["msg"])
    return InvalidInput(f"{path}: {message}{more}")


# A body parsed before validation (by orjson, at the REST door) is checked as Python
# values; say what is wrong in JSON's terms, as pydantic does for JSON text.
_JSON_WORDS = {
    "list_type": "Input should be a valid array",
    "model_type": "Input should be an object",
    "dict_type": "Input should be an object",
}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _arrays(tensors: list[_Tensor], field: str, kind: str) -> dict[str, Array]:
    arrays: dict[str, Array] = {}
    for index, tensor in enumerate(tensors):
        where = f"{field}[{index}]"
        if not tensor.name:
            raise InvalidInput(f"{where}.name: must not be empty")
        if tensor.name in arrays:
            raise InvalidInput(f"{where}.name: {kind} {tensor.name!r} appears more than once")
        numpy_dtype(tensor.datatype, where=f"{where}.datatype")
        element_count(tensor.shape, where=f"{where}.shape")
        arrays[tensor.name] = array_from_json(
            tensor.data,
            tensor.datatype,
            tensor.shape,
            base64_strings=_is_base64(tensor),
            where=f"{where}.data",
        )
    return arrays


def _is_base64(tensor: _Tensor) -> bool:
    params = tensor.parameters or {}
    return tensor.datatype == "BYTES" and params.get(_CONTENT_TYPE) == _BASE64


def _tensor_parameters(tensor: _Tensor) -> dict[str, Any]:
    params = dict(tensor.parameters or {})
    if _is_base64(tensor):
        del params[_CONTENT_TYPE]
    return params


def _tensor_json(
    tensor: ModelInferRequest.InferInputTensor | ModelInferResponse.InferOutputTensor,
    array: Array,
) -> dict[str, Any]:
    data, is_base64 = array_to_json(array, tensor.datatype)
    params = read_parameters(tensor.parameters) if tensor.parameters else {}
    if is_base64:
        params[_CONTENT_TYPE] = _BASE64
    out: dict[str, Any] = {
        "name": tensor.name,
        "shape": list(tensor.shape),
        "datatype": tensor.datatype,
    }
    if params:
        out["parameters"] = params
    out["data"] = data
    return out


def _output_json(output: ModelInferRequest.InferRequestedOutputTensor) -> dict[str, Any]:
    out: dict[str, Any] = {"name": output.name}
    if output.parameters:
        out["parameters"] = read_parameters(output.parameters)
    return out
