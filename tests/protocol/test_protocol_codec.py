"""numpy <-> ModelInferRequest / ModelInferResponse, through serialized bytes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdag.errors import DecodeError, InvalidInput
from streamdag.protocol import (
    DATATYPES,
    Array,
    ModelInferRequest,
    ModelInferResponse,
    datatype_of,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    numpy_dtype,
    read_parameters,
    request_from_bytes,
    requested_outputs,
    response_from_bytes,
)
from streamdag.protocol.codec import (
    Rows,
    decode_requests,
    decode_responses,
    response_bytes,
    response_bytes_many,
)

Sample = Callable[[str, tuple[int, ...]], Array]
Same = Callable[[Array, Array], None]


def _wire_request(request: ModelInferRequest) -> ModelInferRequest:
    return request_from_bytes(request.SerializeToString())


def _wire_response(response: ModelInferResponse) -> ModelInferResponse:
    return response_from_bytes(response.SerializeToString())


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_request_round_trip(
    datatype: str, shape: tuple[int, ...], raw: bool, sample: Sample, assert_same: Same
) -> None:
    array = sample(datatype, shape)
    request = encode_request("m", {"x": array}, raw=raw)
    decoded = decode_request(_wire_request(request))
    assert list(decoded) == ["x"]
    assert request.inputs[0].datatype == datatype
    assert list(request.inputs[0].shape) == list(shape)
    assert_same(array, decoded["x"])
    assert decoded["x"].dtype == numpy_dtype(datatype)


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_response_round_trip(
    datatype: str, shape: tuple[int, ...], raw: bool, sample: Sample, assert_same: Same
) -> None:
    array = sample(datatype, shape)
    response = encode_response("m", {"y": array}, id="r1", model_version="3", raw=raw)
    wire = _wire_response(response)
    assert (wire.model_name, wire.model_version, wire.id) == ("m", "3", "r1")
    assert_same(array, decode_response(wire)["y"])


def test_many_tensors_keep_their_order(sample: Sample, assert_same: Same) -> None:
    arrays = {d.lower(): sample(d, (2, 2)) for d in DATATYPES}
    decoded = decode_request(_wire_request(encode_request("m", arrays)))
    assert list(decoded) == list(arrays)
    for name, array in arrays.items():
        assert_same(array, decoded[name])


def test_raw_encoding_is_little_endian_row_major() -> None:
    array = np.arange(6, dtype=">i4").reshape(2, 3).T  # big-endian and not C-contiguous
    request = encode_request("m", {"x": array})
    assert request.raw_input_contents[0] == np.ascontiguousarray(array).astype("<i4").tobytes()
    decoded = decode_request(request)["x"]
    assert decoded.dtype == np.dtype(np.int32)
    assert np.array_equal(decoded, array)


def test_raw_bytes_layout_is_length_prefixed() -> None:
    request = encode_request("m", {"s": np.array([b"ab", b""], dtype=object)})
    assert request.raw_input_contents[0] == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"


def test_fp16_forces_the_whole_message_raw(sample: Sample) -> None:
    arrays = {"h": sample("FP16", (2,)), "i": sample("INT32", (2,))}
    request = encode_request("m", arrays, raw=False)
    assert len(request.raw_input_contents) == 2
    assert not any(t.HasField("contents") for t in request.inputs)


def test_decoded_arrays_are_writable(sample: Sample) -> None:
    for raw in (True, False):
        decoded = decode_request(encode_request("m", {"x": sample("FP32", (3,))}, raw=raw))
        decoded["x"][0] = 1.0


def test_str_and_fixed_bytes_arrays_are_bytes_tensors() -> None:
    request = encode_request("m", {"u": np.array(["é", "b"]), "s": np.array([b"x", b"yz"])})
    assert [t.datatype for t in request.inputs] == ["BYTES", "BYTES"]
    decoded = decode_request(request)
    assert decoded["u"].tolist() == ["é".encode(), b"b"]
    assert decoded["s"].tolist() == [b"x", b"yz"]


def test_raw_bool_treats_any_nonzero_byte_as_true() -> None:
    request = ModelInferRequest(raw_input_contents=[b"\x00\x02\x01"])
    request.inputs.add(name="b", datatype="BOOL", shape=[3])
    assert decode_request(request)["b"].tolist() == [False, True, True]


def test_request_metadata_parameters_and_outputs() -> None:
    request = encode_request(
        "m",
        {"x": np.zeros(1, np.float32)},
        id="req-1",
        model_version="2",
        parameters={"flag": True, "n": -3, "big": 2**64 - 1, "ratio": 0.5, "tag": "t"},
        outputs=["a", "b"],
    )
    wire = _wire_request(request)
    assert (wire.model_name, wire.model_version, wire.id) == ("m", "2", "req-1")
    assert read_parameters(wire.parameters) == {
        "big": 2**64 - 1,
        "flag": True,
        "n": -3,
        "ratio": 0.5,
        "tag": "t",
    }
    assert requested_outputs(wire) == ["a", "b"]


@pytest.mark.parametrize(
    ("array", "datatype"),
    [
        (np.zeros(1, np.bool_), "BOOL"),
        (np.zeros(1, np.uint16), "UINT16"),
        (np.zeros(1, ">f8"), "FP64"),
        (np.zeros(1, np.float16), "FP16"),
        (np.array([b"a"], dtype=object), "BYTES"),
        (np.array(["a"]), "BYTES"),
    ],
)
def test_datatype_of(array: Array, datatype: str) -> None:
    assert datatype_of(array) == datatype


# ---- bad input --------------------------------------------------------------------


def _raw_request(datatype: str, shape: list[int], raw: bytes) -> ModelInferRequest:
    request = ModelInferRequest(model_name="m", raw_input_contents=[raw])
    request.inputs.add(name="x", datatype=datatype, shape=shape)
    return request


def _typed_request(datatype: str, shape: list[int], **contents: list[object]) -> ModelInferRequest:
    request = ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    return request


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (_raw_request("FOO", [1], b"\x00"), "input 'x': unknown datatype 'FOO'; expected one of"),
        (
            _raw_request("INT32", [3], b"\x00" * 8),
            "input 'x': raw contents hold 8 bytes but shape [3] of INT32 needs 12",
        ),
        (_raw_request("INT32", [-1], b""), "input 'x': shape [-1] has a negative dimension"),
        (
            _raw_request("FP32", [2**62, 2**62, 0], b""),
            f"input 'x': shape [{2**62}, {2**62}, 0] is larger than any tensor can be",
        ),
        (
            _typed_request("FP32", [2**62, 0, 2**62]),
            f"input 'x': shape [{2**62}, 0, {2**62}] is larger than any tensor can be",
        ),
        (
            _raw_request("FP32", [1] * 65, b"\x00" * 4),
            "input 'x': shape has 65 dimensions; at most 64 are supported",
        ),
        (
            _raw_request("BYTES", [2], b"\x01\x00\x00\x00a\x01\x00"),
            "input 'x': raw BYTES contents end inside the length of element 1",
        ),
        (
            _raw_request("BYTES", [1], b"\x05\x00\x00\x00ab"),
            "input 'x': raw BYTES element 0 claims 5 bytes but only 2 remain",
        ),
        (
            _raw_request("BYTES", [1], b"\x01\x00\x00\x00a\x00\x00\x00\x00"),
            "input 'x': raw BYTES contents have 4 bytes left after the 1 elements",
        ),
        (
            _raw_request("BYTES", [3], b"\x01\x00\x00\x00a"),
            "input 'x': raw BYTES contents hold 1 elements but the shape needs 3",
        ),
        (
            _typed_request("INT32", [3], int_contents=[1, 2]),
            "input 'x': int_contents has 2 elements but shape [3] needs 3",
        ),
        (
            _typed_request("INT32", [1], fp32_contents=[1.0]),
            "input 'x': datatype INT32 takes int_contents, got fp32_contents",
        ),
        (
            _typed_request("FP16", [1], fp32_contents=[1.0]),
            "input 'x': FP16 has no typed contents field in OIP; send it as raw contents",
        ),
        (
            _typed_request("INT8", [2], int_contents=[1, 300]),
            "input 'x': int_contents value 300 is out of range for INT8",
        ),
        (
            _typed_request("UINT16", [1], uint_contents=[70000]),
            "input 'x': uint_contents value 70000 is out of range for UINT16",
        ),
    ],
    ids=lambda v: "" if isinstance(v, ModelInferRequest) else v.split(": ", 1)[-1][:40],
)
def test_bad_tensor_is_invalid_input(request_: ModelInferRequest, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_request(request_)
    assert str(caught.value).startswith(message)


def test_mixing_raw_and_typed_contents_is_refused() -> None:
    request = ModelInferRequest(raw_input_contents=[b"\x00" * 4])
    request.inputs.add(name="a", datatype="INT32", shape=[1])
    request.inputs.add(name="b", datatype="INT32", shape=[1]).contents.int_contents.append(1)
    with pytest.raises(InvalidInput, match="raw_input_contents has 1 entries but there are 2"):
        decode_request(request)
    request.raw_input_contents.append(b"\x00" * 4)
    with pytest.raises(InvalidInput, match="input 'b': has typed contents while the message"):
        decode_request(request)


def test_response_errors_name_outputs() -> None:
    response = ModelInferResponse(raw_output_contents=[b"\x00"])
    response.outputs.add(name="y", datatype="FP32", shape=[1])
    with pytest.raises(InvalidInput, match="output 'y': raw contents hold 1 bytes"):
        decode_response(response)


def test_missing_and_duplicate_names_are_refused() -> None:
    request = ModelInferRequest()
    request.inputs.add(datatype="INT32", shape=[0])
    with pytest.raises(InvalidInput, match="input 0 has no name"):
        decode_request(request)
    request = ModelInferRequest()
    request.inputs.add(name="a", datatype="INT32", shape=[0])
    request.inputs.add(name="a", datatype="INT32", shape=[0])
    with pytest.raises(InvalidInput, match="input 'a': appears more than once"):
        decode_request(request)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"c": np.zeros(2, np.complex64)}, "input 'c': numpy dtype complex64 has no OIP datatype"),
        (
            {"s": np.array([b"a", None], dtype=object)},
            "input 's': BYTES element [1] is NoneType, expected bytes",
        ),
        ({"": np.zeros(1)}, "input names must be non-empty strings, got ''"),
    ],
)
def test_unencodable_arrays_are_invalid_input(arrays: dict[str, Array], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        encode_request("m", arrays)
    assert str(caught.value) == message


def test_typed_encoding_refuses_bad_bytes_elements_too() -> None:
    with pytest.raises(InvalidInput, match=r"output 's': BYTES element \[0, 1\] is int"):
        encode_response("m", {"s": np.array([[b"a", 3]], dtype=object)}, raw=False)


def test_undecodable_bytes_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match=r"not an inference\.ModelInferRequest"):
        request_from_bytes(b"\xff\xff\xff")
    with pytest.raises(DecodeError, match=r"not an inference\.ModelInferResponse"):
        response_from_bytes(b"\x0a\x05ab")


# ---- many messages at once (the engine's path) ------------------------------------------


def _outcome(decode: Callable[[], dict[str, Array]]) -> dict[str, Array] | str:
    try:
        return decode()
    except InvalidInput as exc:
        return str(exc)


def test_decode_requests_matches_decode_request_one_by_one(sample: Sample) -> None:
    """A batch mixing layouts, row counts, datatypes, typed and raw contents and bad
    messages decodes to exactly what each message decodes to alone."""
    requests = [
        encode_request("m", {"x": sample("FP32", (1, 3)), "k": sample("INT64", (1,))}),
        encode_request("m", {"x": sample("FP32", (2, 3)), "k": sample("INT64", (2,))}),
        encode_request("m", {"x": sample("FP32", (1, 3))}),  # another layout
        encode_request("m", {"x": sample("FP32", (1, 3))}, raw=False),  # typed contents
        encode_request("m", {"b": sample("BOOL", (2, 2))}),
        encode_request("m", {"s": sample("BYTES", (2,))}),
        encode_request("m", {"z": sample("FP16", ())}),  # 0-d: not batchable
        encode_request("m", {"e": sample("UINT8", (0, 4))}),  # no rows at all
        _raw_request("INT32", [3], b"\x00" * 8),  # byte count does not fit the shape
        _raw_request("INT32", [2**62, 2**62, 0], b""),  # no array takes this shape
        encode_request("m", {"x": sample("FP32", (3, 3)), "k": sample("INT64", (3,))}),
    ]
    requests[4].raw_input_contents[0] = b"\x00\x02\x00\x01"  # any non-zero byte is true
    requests = [_wire_request(r) for r in requests]

    batch = decode_requests(requests)

    assert len(batch) == len(requests)
    for request, got in zip(requests, batch, strict=True):
        expected = _outcome(lambda request=request: decode_request(request))
        if isinstance(expected, str):
            assert isinstance(got, InvalidInput)
            assert str(got) == expected
            continue
        assert isinstance(got, dict)
        assert list(got) == list(expected)
        for name, array in expected.items():
            assert got[name].dtype == array.dtype
            assert got[name].shape == array.shape
            assert got[name].tolist() == array.tolist()
            assert got[name].flags.writeable


def test_decoded_rows_of_a_batch_do_not_share_writes() -> None:
    first, second = decode_requests(
        [_wire_request(encode_request("m", {"x": np.zeros((1, 2), np.float32)}))] * 2
    )
    assert isinstance(first, dict) and isinstance(second, dict)
    first["x"][0, 0] = 7
    assert second["x"].tolist() == [[0.0, 0.0]]


def test_decode_responses_matches_decode_response() -> None:
    responses = [
        _wire_response(encode_response("m", {"y": np.full((1, 2), i, np.int16)})) for i in range(3)
    ]
    batch = decode_responses(responses)
    assert [b["y"].tolist() for b in batch if isinstance(b, dict)] == [
        decode_response(r)["y"].tolist() for r in responses
    ]


@pytest.mark.parametrize(
    "arrays",
    [
        {"y": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array([1, 2], np.int64)},
        {"y": np.arange(3, dtype=">i4")},  # big-endian in memory: converted for the wire
        {"s": np.array([b"a", b"bc"], dtype=object)},
        {"l": [[1.5, 2.5]]},  # not an array: the general path converts it
        {"h": np.ones((2, 2), np.float16)[:, :1]},  # a strided view
    ],
    ids=["two-outputs", "big-endian", "bytes", "list", "strided"],
)
def test_response_bytes_parses_like_encode_response(arrays: dict[str, object]) -> None:
    for request_id in ("r-1", "r-2"):  # the second one reuses the cached head
        values = response_bytes(
            arrays, id=request_id, model_version="3", model_names=["step-model", "pipe"]
        )
        for name, value in zip(["step-model", "pipe"], values, strict=True):
            want = encode_response(name, arrays, id=request_id, model_version="3")  # type: ignore[arg-type]
            assert response_from_bytes(value) == want


def test_response_bytes_refuses_what_encode_response_refuses() -> None:
    with pytest.raises(InvalidInput, match="numpy dtype complex128 has no OIP datatype"):
        response_bytes({"c": np.zeros(2, complex)}, id="r", model_version="1")


def test_grouped_decode_gives_each_request_its_rows_of_one_array_per_tensor() -> None:
    """``grouped``: requests of one layout share one decoded array per tensor; each
    request's rows are the same values its own decoding gives, and the rest decode as
    before."""
    requests = [
        _wire_request(encode_request("m", {"x": np.full((rows, 2), i, np.float32)}))
        for i, rows in enumerate([1, 3, 2])
    ]
    requests.insert(1, _wire_request(encode_request("m", {"s": np.array([b"a"], dtype=object)})))

    grouped = decode_requests(requests, grouped=True)

    rows = [g for g in grouped if isinstance(g, Rows)]
    assert len(rows) == 3 and isinstance(grouped[1], dict)
    (columns,) = {id(r.columns): r.columns for r in rows}.values()
    assert columns.counts() == [1, 3, 2] and columns.arrays["x"].shape == (6, 2)
    for got, request in zip(rows, [requests[0], *requests[2:]], strict=True):
        assert got.arrays()["x"].tolist() == decode_request(request)["x"].tolist()


_FIXED_DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int64, np.uint16, np.bool_]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    counts=st.lists(st.integers(1, 4), min_size=1, max_size=6),
    widths=st.lists(st.integers(1, 300), min_size=1, max_size=3),
    dtypes=st.lists(st.sampled_from(_FIXED_DTYPES), min_size=3, max_size=3),
    ids=st.lists(st.text(max_size=150), min_size=6, max_size=6),
    names=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=3),
    big_endian=st.booleans(),
)
def test_response_bytes_many_writes_what_response_bytes_writes_request_by_request(
    counts: list[int],
    widths: list[int],
    dtypes: list[type],
    ids: list[str],
    names: list[str],
    big_endian: bool,
) -> None:
    """A micro-batch's results encoded together are byte for byte the responses each
    request's rows would get alone, for every target name."""
    total = sum(counts)
    rng = np.random.default_rng(total)
    outputs = {}
    for k, width in enumerate(widths):
        array = (rng.standard_normal((total, width)) * 100).astype(dtypes[k])
        outputs[f"out{k}"] = array.astype(array.dtype.newbyteorder(">")) if big_endian else array
    request_ids = ids[: len(counts)]

    many = response_bytes_many(
        outputs, counts, ids=request_ids, model_version="7", model_names=names
    )

    assert many is not None
    start = 0
    for rid, rows, values in zip(request_ids, counts, many, strict=True):
        alone = {name: array[start : start + rows] for name, array in outputs.items()}
        assert values == response_bytes(alone, id=rid, model_version="7", model_names=names)
        start += rows


def test_response_bytes_many_leaves_bytes_tensors_and_wrong_row_counts_to_each_request() -> None:
    strings = {"s": np.array([b"a", b"bc", b"d"], dtype=object)}
    assert response_bytes_many(strings, [1, 2], ids=["a", "b"], model_version="1") is None
    short = {"y": np.zeros((2, 1), np.float32)}
    assert response_bytes_many(short, [1, 2], ids=["a", "b"], model_version="1") is None
