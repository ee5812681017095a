"""Generated OIP inference requests for the fuzzed doors, and what each should get.

A ``Case`` is a request the model ``double`` (and the pipeline around it) takes: ``x``
FP32 ``[rows, 4]`` and ``text`` BYTES ``[rows]``, with NaN, infinities and bytes that
are not UTF-8 among the values, all valid. At most one ``mutation`` then breaks it, in
the form's own terms (a JSON body, the binary tensor extension, a protobuf message); a
case with a mutation must be refused with a client error, one without must be answered.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from hypothesis import strategies as st

from streamdag.protocol import ModelInferRequest

MODEL = "double"
COLUMNS = 4

# Mutations every form can carry: they change what the request says, not how it is written.
SEMANTIC = (
    "datatype",  # x is not FP32
    "shape_count",  # x's shape does not hold its data
    "shape_declared",  # x's shape holds its data, but not in the model's [-1, 4]
    "huge_dim",
    "negative_dim",
    "duplicate_input",
    "missing_input",
    "unknown_input",
    "rows_differ",  # text has another number of rows than x
    "long_id",
    "bad_parameter",
    "unknown_output",
    "unknown_target",  # a model or pipeline that does not exist
    "wrong_version",
    "empty_name",
)
JSON_ONLY = (
    "truncate",
    "encoding",
    "bad_utf8",
    "deep_data",
    "deep_parameters",
    "field_type",
    "data_value",
    "nan_field",
    "not_an_object",
    "output_flag",
)
BINARY_ONLY = (
    "truncate",
    "bad_utf8",
    "binary_size",
    "header_length",
    "data_and_size",
    "bytes_prefix",
    "output_flag",
)
GRPC_ONLY = (
    "truncate",
    "bad_utf8",
    "deep_groups",
    "raw_count",
    "mixed_forms",
    "wrong_contents",
    "empty_parameter",
    "garbage",
    "bytes_prefix",
)


@dataclass
class Case:
    route: str  # "model" or "pipeline"
    x: np.ndarray
    text: list[bytes]
    has_id: bool
    parameters: dict[str, Any]
    outputs: list[str]
    binary_output: bool
    mutation: str | None
    pick: int  # chooses among a mutation's variants
    cut: float  # where a truncation cuts, as a fraction of the body
    request_id: str = field(default="")

    @property
    def valid(self) -> bool:
        return self.mutation is None


def _bytes_items() -> st.SearchStrategy[bytes]:
    # Text, or bytes that are mostly not UTF-8 (JSON carries those as base64).
    return st.one_of(st.text(max_size=6).map(str.encode), st.binary(max_size=6))


_FLOATS = st.floats(width=32, allow_nan=True, allow_infinity=True)
_PARAMS = st.one_of(
    st.dictionaries(
        st.sampled_from(["priority", "note", "flag", "ratio"]),
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.booleans(), st.text(max_size=5), _FLOATS),
        max_size=2,
    ),
    # Timeouts (µs) long enough never to end a call, up to the largest a parameter holds.
    st.sampled_from([60_000_000, 2**63 - 1, 1e300, float("inf")]).map(lambda t: {"timeout": t}),
)


@st.composite
def cases(draw: st.DrawFn, mutations: tuple[str, ...]) -> Case:
    rows = draw(st.integers(1, 3))
    values = draw(st.lists(_FLOATS, min_size=rows * COLUMNS, max_size=rows * COLUMNS))
    # Mostly valid-looking mutations: a third of the cases stay valid.
    mutation = draw(st.one_of(st.none(), st.sampled_from(mutations), st.sampled_from(mutations)))
    return Case(
        route=draw(st.sampled_from(["model", "pipeline"])),
        x=np.array(values, dtype=np.float32).reshape(rows, COLUMNS),
        text=draw(st.lists(_bytes_items(), min_size=rows, max_size=rows)),
        has_id=draw(st.booleans()),
        parameters=draw(_PARAMS),
        outputs=draw(st.sampled_from([[], ["y"], ["t"], ["t", "y"]])),
        binary_output=draw(st.booleans()),
        mutation=mutation,
        pick=draw(st.integers(0, 1_000)),
        cut=draw(st.floats(0.0, 0.999)),
    )


# -- the request as plain tensors, with the semantic mutations applied ------------------
@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    values: Any  # a numpy array, or a list of bytes for BYTES


def tensors_of(case: Case) -> list[Tensor]:
    rows = len(case.x)
    x = Tensor("x", "FP32", [rows, COLUMNS], case.x)
    text = Tensor("text", "BYTES", [rows], list(case.text))
    tensors = [x, text]
    m, pick = case.mutation, case.pick
    if m == "datatype":
        x.datatype = ["FP64", "INT32", "BYTES", "fp32", "FLOAT", "", "UINT8"][pick % 7]
        if x.datatype in ("FP64", "INT32", "UINT8"):
            # Data of the stated type, so that only the model's declaration refuses it.
            dtype = {"FP64": np.float64, "INT32": np.int32, "UINT8": np.uint8}[x.datatype]
            x.values = np.nan_to_num(case.x).clip(0, 200).astype(dtype)
    elif m == "shape_count":
        x.shape = [rows, COLUMNS + 1 + pick % 3] if pick % 2 else [rows + 1, COLUMNS]
    elif m == "shape_declared":
        x.shape = [[rows * COLUMNS], [rows, 2, 2], [rows * 2, 2], [1, rows, COLUMNS]][pick % 4]
    elif m == "huge_dim":
        huge = [2**31, 2**40, 2**62, 2**63 - 1][pick % 4]
        x.shape = [huge, COLUMNS] if pick % 2 else [rows, huge]
    elif m == "negative_dim":
        x.shape = [-rows, COLUMNS] if pick % 2 else [rows, -COLUMNS]
        if pick % 5 == 0:
            x.shape = [-(2**63), COLUMNS]
    elif m == "duplicate_input":
        tensors.append(Tensor("x", "FP32", list(x.shape), case.x))
    elif m == "missing_input":
        tensors.remove(text if pick % 2 else x)
    elif m == "unknown_input":
        tensors.append(Tensor("extra", "FP32", [rows, COLUMNS], case.x))
    elif m == "rows_differ":
        text.values = [*case.text, b"more"]
        text.shape = [rows + 1]
    elif m == "empty_name":
        x.name = ""
    return tensors


def request_id(case: Case) -> str:
    if case.mutation == "long_id":
        return case.request_id + "-" + "i" * 300
    return case.request_id if case.has_id else ""


def parameters_of(case: Case) -> dict[str, Any]:
    params = dict(case.parameters)
    if case.mutation == "bad_parameter":
        params["timeout"] = [-5, 0, "soon", False, -0.5][case.pick % 5]
    return params


def outputs_of(case: Case) -> list[str]:
    return [*case.outputs, "nope"] if case.mutation == "unknown_output" else list(case.outputs)


def path_parts(case: Case, pipeline: str) -> tuple[str, str]:
    """The target's name and version as the request names them."""
    name = MODEL if case.route == "model" else pipeline
    if case.mutation == "unknown_target":
        name = [name + "-missing", "ünïcödé", "a" * 2_000, "x y", name.upper()][case.pick % 5]
    version = "7" if case.mutation == "wrong_version" else ""
    return name, version


# -- OIP JSON -------------------------------------------------------------------------
def _json_tensor(tensor: Tensor) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tensor.name, "shape": tensor.shape, "datatype": tensor.datatype}
    if tensor.datatype == "BYTES" and isinstance(tensor.values, list):
        items: list[bytes] = tensor.values
        try:
            out["data"] = [item.decode("utf-8") for item in items]
        except UnicodeDecodeError:
            out["parameters"] = {"content_type": "base64"}
            out["data"] = [base64.b64encode(item).decode() for item in items]
    elif isinstance(tensor.values, np.ndarray):
        out["data"] = tensor.values.tolist()
    else:
        out["data"] = list(tensor.values)
    return out


def json_object(case: Case, pipeline: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    rid = request_id(case)
    if rid:
        body["id"] = rid
    params = parameters_of(case)
    if case.binary_output:
        params["binary_data_output"] = True
    if params:
        body["parameters"] = params
    body["inputs"] = [_json_tensor(t) for t in tensors_of(case)]
    outputs = outputs_of(case)
    if outputs:
        body["outputs"] = [{"name": name} for name in outputs]
    return body


_DEEP = "DEEP-NESTING-GOES-HERE"


def _break_output_flag(body: dict[str, Any], pick: int) -> None:
    """A binary-data flag that is not true or false."""
    flag = ["yes", 1, None, 0.0][pick % 4]
    if pick % 2:
        body.setdefault("parameters", {})["binary_data_output"] = flag
    else:
        body["outputs"] = [{"name": "y", "parameters": {"binary_data": flag}}]


def _dumps(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode()


def json_body(case: Case, pipeline: str) -> bytes:
    """The request as OIP JSON, broken as its mutation says."""
    body = json_object(case, pipeline)
    m, pick = case.mutation, case.pick
    x = body["inputs"][0]
    deep: bytes | None = None
    if m == "deep_data":
        # Written by hand: json.dumps itself recurses.
        depth = [40, 70, 300, 5_000][pick % 4]
        x["data"] = _DEEP
        deep = b"[" * depth + b"1.0" + b"]" * depth
    elif m == "deep_parameters":
        depth = [3, 300, 5_000][pick % 3]
        body["parameters"] = {"deep": _DEEP}
        deep = b'{"a":' * depth + b"1" + b"}" * depth
    elif m == "field_type":
        key, value = [
            ("shape", "4"),
            ("data", {"a": 1}),
            ("name", 5),
            ("datatype", None),
            ("shape", [1.5, 4]),
            ("shape", [True, 4]),
            ("parameters", [1]),
            ("data", "1,2,3"),
        ][pick % 8]
        x[key] = value
        if pick % 11 == 0:
            body["inputs"] = {"x": x}
        elif pick % 13 == 0:
            body["id"] = 12
    elif m == "data_value":
        flat = [v for row in x["data"] for v in row]
        flat[pick % len(flat)] = ["1.5", True, None, {"v": 1}, 10**400, [1.0, 2.0], -(10**400)][
            pick % 7
        ]
        x["data"] = flat
    elif m == "nan_field":
        target = pick % 3
        text = _dumps(body)
        if target == 0:
            return text.replace(b'"shape": [', b'"shape": [NaN, ', 1)
        if target == 1:
            body["inputs"][1]["data"] = [float("inf")] * len(case.x)
            body["inputs"][1].pop("parameters", None)
            return _dumps(body)
        body["parameters"] = {**body.get("parameters", {}), "timeout": float("nan")}
    elif m == "output_flag":
        _break_output_flag(body, pick)
    elif m == "not_an_object":
        return [b"[]", b"42", b'"inputs"', b"null", b"", b"{}", b'{"inputs": []}'][pick % 7]
    text = _dumps(body)
    if deep is not None:
        text = text.replace(f'"{_DEEP}"'.encode(), deep)
    if m == "truncate":
        return text[: int(len(text) * case.cut)]
    if m == "bad_utf8":
        # A byte that starts no UTF-8 sequence, inside a string of the body.
        at = text.index(b'"name"') + 2
        return text[:at] + b"\xff\xfe" + text[at:]
    return text


# -- the binary tensor extension -------------------------------------------------------
_LENGTH = struct.Struct("<I")


def _raw(tensor: Tensor, corrupt: int | None = None) -> bytes:
    """The tensor's raw bytes; ``corrupt`` makes a BYTES element claim more bytes than
    follow (or, past the last element, leaves a partial length behind)."""
    if tensor.datatype == "BYTES" and isinstance(tensor.values, list):
        items = [_LENGTH.pack(len(v)) + v for v in tensor.values]
        if corrupt is not None:
            at = corrupt % (len(items) + 1)
            if at == len(items):
                items.append(b"\x01\x00")
            else:
                items[at] = _LENGTH.pack(len(tensor.values[at]) + 1_000) + tensor.values[at]
        return b"".join(items)
    values = np.asarray(tensor.values)
    if tensor.datatype == "BYTES":
        values = values.astype(np.float32)
    return values.astype(values.dtype.newbyteorder("<")).tobytes()


def binary_body(case: Case, pipeline: str) -> tuple[bytes, str]:
    """The request with every tensor's data after the JSON header, and that header's length
    (the ``Inference-Header-Content-Length`` value)."""
    body = json_object(case, pipeline)
    tensors = tensors_of(case)
    chunks = []
    corrupt = case.pick if case.mutation == "bytes_prefix" else None
    for tensor, spec in zip(tensors, body["inputs"], strict=True):
        chunk = _raw(tensor, corrupt)
        spec.pop("data")
        spec["parameters"] = {"binary_data_size": len(chunk)}
        chunks.append(chunk)
    m, pick = case.mutation, case.pick
    if m == "binary_size":
        size = body["inputs"][pick % len(chunks)]["parameters"]
        size["binary_data_size"] = [
            size["binary_data_size"] + 1,
            -1,
            "8",
            True,
            1.5,
            None,
            size["binary_data_size"] - 1,
        ][pick % 7]
    elif m == "data_and_size":
        body["inputs"][0]["data"] = case.x.ravel().tolist()
    elif m == "output_flag":
        _break_output_flag(body, pick)
    header = _dumps(body)
    tail = b"".join(chunks)
    if m == "bad_utf8":
        at = header.index(b'"name"') + 2
        header = header[:at] + b"\xc3\x28" + header[at:]
    length = str(len(header))
    if m == "header_length":
        length = ["-1", "abc", "", "1e3", "0x10", "0", str(len(header) + len(tail) + 1 + pick)][
            pick % 7
        ]
    whole = header + tail
    if m == "truncate":
        whole = whole[: int(len(whole) * case.cut)]
    return whole, length


# -- protobuf (gRPC) --------------------------------------------------------------------
def grpc_message(case: Case, pipeline: str, *, raw: bool) -> ModelInferRequest:
    name, version = path_parts(case, pipeline)
    raw = raw or case.mutation == "bytes_prefix"  # corrupt length prefixes are raw only
    request = ModelInferRequest(model_name=name, model_version=version, id=request_id(case))
    params = parameters_of(case)
    for key, value in params.items():
        slot = request.parameters[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int):
            slot.int64_param = value
        elif isinstance(value, float):
            slot.double_param = value
        else:
            slot.string_param = str(value)
    m, pick = case.mutation, case.pick
    for tensor in tensors_of(case):
        added = request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if raw:
            corrupt = pick if m == "bytes_prefix" else None
            request.raw_input_contents.append(_raw(tensor, corrupt))
        elif tensor.datatype == "BYTES" and isinstance(tensor.values, list):
            added.contents.bytes_contents.extend(tensor.values)
        elif tensor.datatype == "BYTES":
            added.contents.bytes_contents.extend([b"1"] * np.asarray(tensor.values).size)
        else:
            values = np.asarray(tensor.values).ravel().tolist()
            field_name = {
                "FP32": "fp32_contents",
                "FP64": "fp64_contents",
                "INT32": "int_contents",
                "UINT8": "uint_contents",
            }.get(tensor.datatype, "fp32_contents")
            getattr(added.contents, field_name).extend(values)
    m, pick = case.mutation, case.pick
    # Requested outputs come before raw contents on the wire: a message cut among them
    # could still be whole, so a cut one asks for none.
    for output in [] if m == "truncate" else outputs_of(case):
        request.outputs.add(name=output)
    if m == "raw_count":
        if raw and pick % 2:
            request.raw_input_contents.append(b"\x00" * 4)
        elif raw:
            request.raw_input_contents.pop()
        else:
            request.raw_input_contents.append(b"\x00" * 16)
    elif m == "mixed_forms":
        request.inputs[1].contents.bytes_contents.append(b"typed")
        if not raw:
            request.raw_input_contents.extend([b"", b""])
    elif m == "wrong_contents":
        # Typed contents in a field FP32 does not use.
        del request.raw_input_contents[:]
        request.inputs[1].contents.Clear()
        request.inputs[1].contents.bytes_contents.extend(case.text)
        contents = request.inputs[0].contents
        contents.Clear()
        field_name, item = [("int_contents", 1), ("bool_contents", True), ("bytes_contents", b"1")][
            pick % 3
        ]
        getattr(contents, field_name).extend([item] * case.x.size)
    elif m == "empty_parameter":
        request.parameters["empty"].Clear()
    return request


def grpc_body(case: Case, pipeline: str, *, raw: bool) -> bytes:
    """The request's protobuf bytes, broken as its mutation says."""
    m = case.mutation
    if m == "bad_utf8":
        placeholder = "P" * 8
        message = grpc_message(replace(case, mutation=None), pipeline, raw=raw)
        message.inputs[0].name = placeholder
        data = message.SerializeToString()
        return data.replace(placeholder.encode(), b"x\xff\xfe\xfd\xfc\xfb\xfa\xf9", 1)
    if m == "garbage":
        return [b"\xff" * 9, b"\x0a\xff\xff\xff\xff\x0f", b"\x3a\x05abc", b"\x08"][case.pick % 4]
    data = grpc_message(case, pipeline, raw=raw).SerializeToString()
    if m == "truncate":
        return data[: int(len(data) * case.cut)]
    if m == "deep_groups":
        # Unknown groups (field 99) nested deeper than protobuf's limit of 100.
        depth = [101, 2_000, 50_000][case.pick % 3]
        return data + b"\x9b\x06" * depth + b"\x9c\x06" * depth
    return data
