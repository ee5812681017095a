"""Drive a server with the unmodified ``tritonclient.grpc`` and print what it saw as JSON.

Runs in its own process: tritonclient.grpc registers Triton's ``inference.*`` protobuf
messages in the default descriptor pool, where streamdag's own (wire-identical) ones
already are, so the two cannot be imported by one interpreter.

Usage: python triton_grpc_client.py HOST:PORT PIPELINE
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def attempt(call: Callable[[], Any]) -> dict[str, Any]:
    """The call's result, or the status and message of the error it raised."""
    try:
        return {"ok": call()}
    except InferenceServerException as exc:
        return {"status": exc.status(), "message": exc.message()}


def main(url: str, pipeline: str) -> dict[str, Any]:
    client = grpcclient.InferenceServerClient(url)
    out: dict[str, Any] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "server_metadata": client.get_server_metadata(as_json=True),
        "scale_ready": client.is_model_ready("scale"),
        "scale_metadata": client.get_model_metadata("scale", as_json=True),
        "add_one_metadata": client.get_model_metadata("add_one", model_version="1", as_json=True),
        "index": client.get_model_repository_index(as_json=True),
    }

    x = grpcclient.InferInput("x", [2, 3], "FP32")
    x.set_data_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    result = client.infer("scale", [x], request_id="grpc-scale-1")
    out["scale"] = {
        "y": result.as_numpy("y").tolist(),
        "id": result.get_response().id,
        "version": result.get_response().model_version,
    }

    text = grpcclient.InferInput("text", [3], "BYTES")
    text.set_data_from_numpy(np.array([b"abc", "h\u00e9llo".encode(), b""], dtype=object))
    result = client.infer("upper", [text], outputs=[grpcclient.InferRequestedOutput("upper")])
    out["upper"] = {
        "upper": [item.decode() for item in result.as_numpy("upper")],
        "outputs": [o.name for o in result.get_response().outputs],
    }

    ax = grpcclient.InferInput("x", [1, 2], "FP32")
    ax.set_data_from_numpy(np.array([[1.5, -1.0]], dtype=np.float32))
    out["add_one"] = client.infer("add_one", [ax]).as_numpy("y").tolist()

    px = grpcclient.InferInput("x", [2], "INT64")
    px.set_data_from_numpy(np.array([7, 8], dtype=np.int64))
    result = client.infer(pipeline, [px], request_id="grpc-pipe-1", headers={"x-tenant": "t1"})
    out["pipeline"] = {"x": result.as_numpy("x").tolist(), "id": result.get_response().id}

    wrong = grpcclient.InferInput("x", [2, 3], "INT32")
    wrong.set_data_from_numpy(np.zeros((2, 3), dtype=np.int32))
    out["wrong_dtype"] = attempt(lambda: client.infer("scale", [wrong]))
    out["unknown_model"] = attempt(lambda: client.infer("nope", [x]))
    unknown = grpcclient.InferInput("z", [2, 3], "FP32")
    unknown.set_data_from_numpy(np.zeros((2, 3), dtype=np.float32))
    out["unknown_input"] = attempt(lambda: client.infer("scale", [unknown]))
    out["model_error"] = attempt(lambda: client.infer("boom", [x]))
    out["unknown_metadata"] = attempt(lambda: client.get_model_metadata("nope"))
    out["unknown_version"] = attempt(lambda: client.get_model_metadata("scale", "7"))
    client.close()
    return out


if __name__ == "__main__":
    json.dump(main(sys.argv[1], sys.argv[2]), sys.stdout)
