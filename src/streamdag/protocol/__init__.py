"""Open Inference Protocol (V2): messages, numpy codec, REST JSON form.

``inference_pb2`` / ``inference_pb2_grpc`` are generated from ``inference.proto``, which is
wire compatible with Triton's, so KServe, Triton and MLServer clients work unchanged.
``codec`` turns arrays into messages and back (raw or typed contents), ``jsonform`` does
the same for REST bodies. Every problem with a message or body raises
``streamdag.errors.InvalidInput`` (``DecodeError`` for undecodable bytes) with a message
that names the tensor or field.
"""

from typing import TYPE_CHECKING, Any

from streamdag.protocol._generated import inference_pb2
from streamdag.protocol._generated.inference_pb2 import (
    InferParameter,
    InferTensorContents,
    ModelInferRequest,
    ModelInferResponse,
)
from streamdag.protocol.codec import (
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    request_from_bytes,
    requested_outputs,
    response_from_bytes,
)
from streamdag.protocol.datatypes import DATATYPES, Array, datatype_of, numpy_dtype
from streamdag.protocol.jsonform import (
    error_body,
    error_from_json,
    request_arrays_from_json,
    request_from_json,
    request_to_json,
    response_from_json,
    response_to_json,
)
from streamdag.protocol.parameters import (
    ParameterValue,
    parameter_value,
    read_parameters,
    write_parameters,
)

if TYPE_CHECKING:
    from streamdag.protocol._generated import inference_pb2_grpc


def __getattr__(name: str) -> Any:
    # The gRPC stubs import grpc, which the engine never needs: imported on first use.
    if name == "inference_pb2_grpc":
        from streamdag.protocol._generated import inference_pb2_grpc

        return inference_pb2_grpc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATATYPES",
    "Array",
    "InferParameter",
    "InferTensorContents",
    "ModelInferRequest",
    "ModelInferResponse",
    "ParameterValue",
    "datatype_of",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "error_body",
    "error_from_json",
    "inference_pb2",
    "inference_pb2_grpc",
    "numpy_dtype",
    "parameter_value",
    "read_parameters",
    "request_arrays_from_json",
    "request_from_bytes",
    "request_from_json",
    "request_to_json",
    "requested_outputs",
    "response_from_bytes",
    "response_from_json",
    "response_to_json",
    "write_parameters",
]
