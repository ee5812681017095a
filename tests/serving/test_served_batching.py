"""Adaptive batching seen from outside: a burst of requests becomes fewer predict calls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.http as httpclient

from streamdag.protocol import decode_response, encode_request, inference_pb2_grpc

from .conftest import Served

N = 16


@pytest.fixture
def calls(served: Served) -> Iterator[list[int]]:
    """Rows of each predict call of the model 'scale_batched' (150 ms window) during the test."""
    log: list[int] = served.models.BatchedScale.CALLS
    log.clear()
    yield log
    log.clear()


def rows_for(i: int) -> np.ndarray:
    # Request i sends i + 1 rows, each row naming the request, so mixed-up rows show.
    return np.full((i + 1, 3), float(i), dtype=np.float32)


def test_rest_burst_is_batched(served: Served, calls: list[int]) -> None:
    client = httpclient.InferenceServerClient(served.http, concurrency=N)
    try:
        pending = []
        for i in range(N):
            x = httpclient.InferInput("x", [i + 1, 3], "FP32")
            x.set_data_from_numpy(rows_for(i))
            pending.append(client.async_infer("scale_batched", [x]))
        results = [p.get_result().as_numpy("y") for p in pending]
    finally:
        client.close()
    for i, y in enumerate(results):
        np.testing.assert_array_equal(y, rows_for(i) * 2)
    assert sum(calls) == sum(i + 1 for i in range(N))
    # Fewer calls than requests: some call held the rows of several requests.
    assert len(calls) < N


def test_grpc_burst_is_batched(served: Served, calls: list[int]) -> None:
    with grpc.insecure_channel(served.grpc) as channel:
        stub: Any = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        futures = [
            stub.ModelInfer.future(
                encode_request("scale_batched", {"x": rows_for(i)}, raw=i % 2 == 0)
            )
            for i in range(N)
        ]
        results = [f.result(timeout=30) for f in futures]
    for i, response in enumerate(results):
        # Each request still gets its answer in the form it asked in.
        assert bool(response.raw_output_contents) is (i % 2 == 0)
        np.testing.assert_array_equal(decode_response(response)["y"], rows_for(i) * 2)
    assert sum(calls) == sum(i + 1 for i in range(N))
    # Fewer calls than requests: some call held the rows of several requests.
    assert len(calls) < N


def test_a_poison_request_fails_alone_in_a_batch(served: Served, calls: list[int]) -> None:
    poison = rows_for(3)
    poison[0, 0] = -1  # Scale raises for a row starting with -1
    with grpc.insecure_channel(served.grpc) as channel:
        stub: Any = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        arrays = [rows_for(0), poison, rows_for(2)]
        futures = [
            stub.ModelInfer.future(encode_request("scale_batched", {"x": a})) for a in arrays
        ]
        outcomes = [f.exception(timeout=30) or f.result() for f in futures]
    error: Any = outcomes[1]
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "rows starting with -1 are poison" in error.details()
    for i in (0, 2):
        np.testing.assert_array_equal(decode_response(outcomes[i])["y"], arrays[i] * 2)
