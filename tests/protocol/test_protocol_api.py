"""The public surface of streamdag.protocol and its wire compatibility with Triton."""

from __future__ import annotations

import numpy as np
import pytest

import streamdag.protocol
from streamdag.protocol import (
    decode_request,
    inference_pb2,
    inference_pb2_grpc,
    read_parameters,
    request_from_bytes,
    requested_outputs,
)


def test_public_api_is_locked() -> None:
    assert sorted(streamdag.protocol.__all__) == [
        "Array",
        "DATATYPES",
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
    for name in streamdag.protocol.__all__:
        assert getattr(streamdag.protocol, name) is not None


def test_datatypes_are_the_thirteen_of_the_spec() -> None:
    assert streamdag.protocol.DATATYPES == (
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
        "FP16", "FP32", "FP64", "BYTES",
    )  # fmt: skip


def test_service_has_the_oip_calls() -> None:
    service = inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert sorted(m.name for m in service.methods) == [
        "ModelInfer",
        "ModelMetadata",
        "ModelReady",
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
        "ServerLive",
        "ServerMetadata",
        "ServerReady",
    ]
    assert hasattr(inference_pb2_grpc, "add_GRPCInferenceServiceServicer_to_server")
    assert hasattr(inference_pb2_grpc, "GRPCInferenceServiceStub")


# Field numbers of Triton's grpc_service.proto (checked against tritonclient 2.73.0).
# A change here breaks every standard client and every record already in Kafka.
_WIRE = {
    "InferParameter": {
        "bool_param": 1, "int64_param": 2, "string_param": 3, "double_param": 4,
        "uint64_param": 5,
    },
    "InferTensorContents": {
        "bool_contents": 1, "int_contents": 2, "int64_contents": 3, "uint_contents": 4,
        "uint64_contents": 5, "fp32_contents": 6, "fp64_contents": 7, "bytes_contents": 8,
    },
    "ModelInferRequest": {
        "model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "inputs": 5,
        "outputs": 6, "raw_input_contents": 7,
    },
    "ModelInferRequest.InferInputTensor": {
        "name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5,
    },
    "ModelInferRequest.InferRequestedOutputTensor": {"name": 1, "parameters": 2},
    "ModelInferResponse": {
        "model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "outputs": 5,
        "raw_output_contents": 6,
    },
    "ModelInferResponse.InferOutputTensor": {
        "name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5,
    },
    "ModelMetadataResponse": {
        "name": 1, "versions": 2, "platform": 3, "inputs": 4, "outputs": 5,
    },
    "RepositoryModelLoadRequest": {"repository_name": 1, "model_name": 2, "parameters": 3},
}  # fmt: skip


@pytest.mark.parametrize("message", sorted(_WIRE))
def test_field_numbers_match_triton(message: str) -> None:
    descriptor = inference_pb2.DESCRIPTOR.message_types_by_name[message.split(".")[0]]
    for nested in message.split(".")[1:]:
        descriptor = descriptor.nested_types_by_name[nested]
    assert {f.name: f.number for f in descriptor.fields} == _WIRE[message]


# A ModelInferRequest serialized by tritonclient 2.73.0 (InferInput.set_data_from_numpy,
# so raw contents) for FP16 [2,3], BYTES [2,2], BOOL [2], UINT64 [1] and INT8 [2] inputs,
# request id "r1", parameter p=3 and requested output "y".
_TRITONCLIENT_REQUEST = bytes.fromhex(
    "0a016d1a02723122070a0170120210032a0f0a036631361204465031361a0202032a0e0a0162120542"
    "595445531a0202022a0d0a02626f1204424f4f4c1a01022a100a03753634120655494e5436341a0101"
    "2a0d0a0269381204494e54381a010232030a01793a0c0000003c00400042004400453a170200000061"
    "6202000000ff00000000000300000078797a3a0201003a08ffffffffffffffff3a02807f"
)


def test_decodes_a_request_built_by_tritonclient() -> None:
    request = request_from_bytes(_TRITONCLIENT_REQUEST)
    arrays = decode_request(request)
    assert (request.model_name, request.id) == ("m", "r1")
    assert read_parameters(request.parameters) == {"p": 3}
    assert requested_outputs(request) == ["y"]
    assert arrays["f16"].dtype == np.float16
    assert arrays["f16"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert arrays["b"].tolist() == [[b"ab", b"\xff\x00"], [b"", b"xyz"]]
    assert arrays["bo"].tolist() == [True, False]
    assert arrays["u64"].tolist() == [2**64 - 1]
    assert arrays["i8"].tolist() == [-128, 127]
