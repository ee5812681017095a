"""The OIP REST JSON form <-> protobuf messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from streamdag.errors import DecodeError, InvalidInput
from streamdag.protocol import (
    DATATYPES,
    Array,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    error_body,
    error_from_json,
    read_parameters,
    request_arrays_from_json,
    request_from_json,
    request_to_json,
    response_from_json,
    response_to_json,
)

Sample = Callable[[str, tuple[int, ...]], Array]
Same = Callable[[Array, Array], None]


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_request_json_round_trip(
    datatype: str, shape: tuple[int, ...], raw: bool, sample: Sample, assert_same: Same
) -> None:
    array = sample(datatype, shape)
    body = request_to_json(encode_request("m", {"x": array}, id="r1"))
    assert body["inputs"][0] == {
        "name": "x",
        "shape": list(shape),
        "datatype": datatype,
        "data": body["inputs"][0]["data"],
    }
    assert len(body["inputs"][0]["data"]) == array.size
    request = request_from_json(_dumps(body), model_name="m", model_version="1", raw=raw)
    assert (request.model_name, request.model_version, request.id) == ("m", "1", "r1")
    assert_same(array, decode_request(request)["x"])


@pytest.mark.parametrize("datatype", DATATYPES)
def test_response_json_round_trip(
    datatype: str, shape: tuple[int, ...], sample: Sample, assert_same: Same
) -> None:
    array = sample(datatype, shape)
    body = response_to_json(encode_response("m", {"y": array}, id="r1", model_version="2"))
    assert [body["model_name"], body["model_version"], body["id"]] == ["m", "2", "r1"]
    response = response_from_json(json.dumps(body))
    assert (response.model_name, response.model_version, response.id) == ("m", "2", "r1")
    assert_same(array, decode_response(response)["y"])


def test_nested_and_flat_data_are_the_same_tensor() -> None:
    def body(data: list[Any]) -> dict[str, Any]:
        return {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "INT16", "data": data}]}

    nested = decode_request(request_from_json(body([[1, 2, 3], [4, 5, 6]]), model_name="m"))
    flat = decode_request(request_from_json(body([1, 2, 3, 4, 5, 6]), model_name="m"))
    assert nested["x"].dtype == np.int16
    assert nested["x"].tolist() == flat["x"].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_nested_bytes_and_scalar_and_empty_tensors() -> None:
    body = {
        "inputs": [
            {"name": "s", "shape": [2, 1], "datatype": "BYTES", "data": [["héllo"], [""]]},
            {"name": "z", "shape": [], "datatype": "FP32", "data": [2.5]},
            {"name": "e", "shape": [3, 0], "datatype": "UINT64", "data": [[], [], []]},
        ]
    }
    arrays = decode_request(request_from_json(body, model_name="m"))
    assert arrays["s"].tolist() == [["héllo".encode()], [b""]]
    assert arrays["z"].shape == () and arrays["z"].item() == 2.5
    assert arrays["e"].shape == (3, 0) and arrays["e"].dtype == np.uint64


def test_fp16_and_extreme_integers_travel_as_json_numbers() -> None:
    body = {
        "inputs": [
            {"name": "h", "shape": [3], "datatype": "FP16", "data": [0.5, -2, 1e6]},
            {"name": "u", "shape": [2], "datatype": "UINT64", "data": [2**64 - 1, 0]},
            {"name": "i", "shape": [2], "datatype": "INT64", "data": [-(2**63), 2**63 - 1]},
        ]
    }
    arrays = decode_request(request_from_json(json.dumps(body), model_name="m"))
    assert arrays["h"].dtype == np.float16
    assert arrays["h"].tolist() == [0.5, -2.0, float("inf")]
    assert arrays["u"].tolist() == [2**64 - 1, 0]
    assert arrays["i"].tolist() == [-(2**63), 2**63 - 1]


def test_non_utf8_bytes_use_base64_with_a_content_type_marker() -> None:
    response = encode_response("m", {"b": np.array([b"\xff\x00", b"ok"], dtype=object)})
    body = response_to_json(response)
    assert body["outputs"][0]["parameters"] == {"content_type": "base64"}
    assert body["outputs"][0]["data"] == ["/wA=", "b2s="]
    back = response_from_json(_dumps(body))
    assert decode_response(back)["b"].tolist() == [b"\xff\x00", b"ok"]
    # Protobuf messages hold the real bytes, so the JSON-only marker is dropped.
    assert len(back.outputs[0].parameters) == 0


def test_utf8_bytes_are_plain_strings() -> None:
    body = response_to_json(encode_response("m", {"b": np.array([b"caf\xc3\xa9"], dtype=object)}))
    assert body["outputs"][0] == {"name": "b", "shape": [1], "datatype": "BYTES", "data": ["café"]}


def test_parameters_are_kept_at_every_level() -> None:
    body = {
        "id": "r9",
        "parameters": {"a": 1, "b": True, "c": 0.5, "d": "x"},
        "inputs": [
            {
                "name": "x",
                "shape": [1],
                "datatype": "BOOL",
                "parameters": {"content_type": "np"},
                "data": [True],
            }
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": False}}, {"name": "z"}],
    }
    request = request_from_json(_dumps(body), model_name="m")
    assert read_parameters(request.parameters) == {"a": 1, "b": True, "c": 0.5, "d": "x"}
    assert read_parameters(request.inputs[0].parameters) == {"content_type": "np"}
    assert read_parameters(request.outputs[0].parameters) == {"binary_data": False}
    assert request_to_json(request) == body


def test_response_json_omits_empty_optional_fields() -> None:
    body = response_to_json(encode_response("m", {"y": np.array([1], np.int8)}))
    assert body == {
        "model_name": "m",
        "outputs": [{"name": "y", "shape": [1], "datatype": "INT8", "data": [1]}],
    }


def test_error_body_helpers() -> None:
    assert error_body(InvalidInput("bad x")) == {"error": "bad x"}
    assert error_from_json(json.dumps(error_body("boom")).encode()) == "boom"
    assert error_from_json("<html>502 Bad Gateway</html>\n") == "<html>502 Bad Gateway</html>"


# ---- bad bodies -------------------------------------------------------------------


def _one(**tensor: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "x", "shape": [2], "datatype": "INT32", "data": [1, 2]}
    base.update(tensor)
    return {"inputs": [base]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1], "request body: Input should be an object"),
        ({}, "inputs: Field required"),
        ({"inputs": {}}, "inputs: Input should be a valid array"),
        ({"inputs": [{"shape": [1], "datatype": "BOOL", "data": [True]}]}, "inputs[0].name: Field"),
        (_one(data=None), "inputs[0].data: Input should be a valid array"),
        (_one(shape=[2.0]), "inputs[0].shape[0]: Input should be a valid integer"),
        (_one(shape=[-2]), "inputs[0].shape: shape [-2] has a negative dimension"),
        (
            _one(shape=[2**70, 0], data=[]),
            f"inputs[0].shape: shape [{2**70}, 0] is larger than any tensor can be",
        ),
        (_one(datatype="INT4"), "inputs[0].datatype: unknown datatype 'INT4'; expected one of"),
        (_one(datatype=5), "inputs[0].datatype: Input should be a valid string"),
        (_one(shape=[3]), "inputs[0].data: has 2 elements but shape [3] needs 3"),
        (_one(data=[[1], [2, 3]]), "inputs[0].data: not a regular nested list of INT32 values"),
        (_one(data=[1, 2.5]), "inputs[0].data: INT32 takes integers, got floating-point numbers"),
        (_one(data=[1, 2.0]), "inputs[0].data: INT32 takes integers, got floating-point numbers"),
        (_one(data=[True, False]), "inputs[0].data: INT32 takes integers, got booleans"),
        (_one(data=[True, 2]), "inputs[0].data: INT32 takes integers, got booleans"),
        (_one(data=[3, False]), "inputs[0].data: INT32 takes integers, got booleans"),
        (_one(data=[True, 2.5]), "inputs[0].data: INT32 takes integers, got bool"),
        (
            _one(datatype="FP32", shape=[4], data=[True, False, 1, 2]),
            "inputs[0].data: FP32 takes numbers, got booleans",
        ),
        (
            _one(datatype="FP64", shape=[2, 2], data=[[0.5, 1.5], [True, 2.0]]),
            "inputs[0].data: FP64 takes numbers, got booleans",
        ),
        (
            _one(datatype="UINT64", data=[2**64 - 1, False]),
            "inputs[0].data: UINT64 takes integers, got bool",
        ),
        (_one(data=["1", "2"]), "inputs[0].data: INT32 takes integers, got strings"),
        (_one(data=[1, None]), "inputs[0].data: INT32 takes integers, got NoneType"),
        (_one(data=[2**31, 0]), "inputs[0].data: value 2147483648 is out of range for INT32"),
        (
            _one(datatype="UINT64", data=[2**64, 0]),
            "inputs[0].data: value 18446744073709551616 is out of range for UINT64",
        ),
        (
            _one(datatype="UINT8", data=[-1, 0]),
            "inputs[0].data: value -1 is out of range for UINT8",
        ),
        (
            _one(datatype="FP32", data=[0.5, 10**400]),
            "inputs[0].data: an integer of 1329 bits is out of range for FP32",
        ),
        (
            _one(datatype="FP64", data=[-(10**309), 1]),
            "inputs[0].data: an integer of 1027 bits is out of range for FP64",
        ),
        (_one(datatype="BOOL", data=[1, 0]), "inputs[0].data: BOOL takes booleans, got integers"),
        (_one(datatype="FP32", data=["a", 1]), "inputs[0].data: FP32 takes numbers, got strings"),
        (
            _one(datatype="BYTES", data=["a", 1]),
            "inputs[0].data: BYTES elements must be strings, got int",
        ),
        (
            _one(datatype="BYTES", data=["YQ==", "%%"], parameters={"content_type": "base64"}),
            "inputs[0].data: element 1 is not valid base64",
        ),
        (
            {"inputs": [_one()["inputs"][0], _one()["inputs"][0]]},
            "inputs[1].name: input 'x' appears more than once",
        ),
        (_one(name=""), "inputs[0].name: must not be empty"),
        (
            {**_one(), "parameters": {"p": [1]}},
            "parameters.p: expected a string, number or boolean, got list",
        ),
        (
            _one(parameters={"p": {"q": 1}}),
            "inputs[0].parameters.p: expected a string, number or boolean, got dict",
        ),
        ({**_one(), "outputs": [{"parameters": {}}]}, "outputs[0].name: Field required"),
        ({**_one(), "id": 7}, "id: Input should be a valid string"),
    ],
)
def test_bad_request_body_names_the_field(body: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        request_from_json(json.dumps(body), model_name="m")
    assert str(caught.value).startswith(message)


def test_zeros_and_ones_stay_numbers() -> None:
    body = {
        "inputs": [
            {"name": "f", "shape": [2, 2], "datatype": "FP32", "data": [[0, 1], [1.0, 0.5]]},
            {"name": "i", "shape": [3], "datatype": "INT8", "data": [0, 1, -1]},
        ]
    }
    arrays = decode_request(request_from_json(body, model_name="m"))
    assert arrays["f"].tolist() == [[0.0, 1.0], [1.0, 0.5]]
    assert arrays["i"].tolist() == [0, 1, -1]


def test_several_errors_are_counted() -> None:
    with pytest.raises(InvalidInput, match=r"\(and 1 more errors\)$"):
        request_from_json({"inputs": [{"shape": [1], "datatype": "BOOL"}]}, model_name="m")


@pytest.mark.parametrize("body", [b"{", b"", "not json", b"\xff"])
def test_non_json_body_is_a_decode_error(body: bytes | str) -> None:
    with pytest.raises(DecodeError, match=r"^request body is not valid JSON: "):
        request_from_json(body, model_name="m")


def test_bad_response_body_names_the_field() -> None:
    with pytest.raises(InvalidInput, match=r"^model_name: Field required"):
        response_from_json(b'{"outputs": []}')
    body = {"model_name": "m", "outputs": [{"name": "y", "shape": [1], "datatype": "FP64"}]}
    with pytest.raises(InvalidInput, match=r"^outputs\[0\].data: Field required"):
        response_from_json(body)
    with pytest.raises(DecodeError, match=r"^response body is not valid JSON"):
        response_from_json("[")


def test_model_name_comes_from_the_caller_not_the_body() -> None:
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [1]}]}
    assert request_from_json(body).model_name == ""
    assert request_from_json(body, model_name="p", model_version="4").model_version == "4"


def test_request_arrays_are_what_the_request_holds() -> None:
    body = {
        "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP16", "data": [[0.5, 1], [2, 3]]},
            {"name": "t", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
        ]
    }
    request, arrays = request_arrays_from_json(json.dumps(body), model_name="m")
    decoded = decode_request(request)
    assert list(arrays) == list(decoded) == ["x", "t"]
    for name, array in arrays.items():
        assert array.dtype == decoded[name].dtype and array.flags.writeable
        np.testing.assert_array_equal(array, decoded[name])
