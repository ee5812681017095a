"""Closed-loop load from asyncio clients: OIP REST JSON (httpx) and OIP gRPC (grpc.aio).

Each transport turns one FP32 tensor into a ready-to-send request once (the client-side
encoding cost is timed apart, in ``Prepared.encode_s``); every call then sends it, waits
for the answer and decodes the answer into a numpy array, as a client would.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
from _drain import BenchmarkFailed

from streamdag.protocol import decode_response, encode_request, inference_pb2_grpc

__all__ = [
    "TRANSPORTS",
    "GrpcClient",
    "Load",
    "Prepared",
    "RestClient",
    "closed_loop",
    "percentile",
]

TRANSPORTS = ("rest-json", "grpc-typed", "grpc-raw")

Call = Callable[[], Awaitable[np.ndarray]]


@dataclass(frozen=True)
class Prepared:
    call: Call  # one request-reply; returns the decoded output
    encode_s: float  # median seconds to build the request from the array (client side)
    request_bytes: int  # size of the request body / message


def _timed_build(build: Callable[[], Any], budget_s: float = 0.3) -> tuple[Any, float]:
    """Build the request a few times (at least once, within ``budget_s``); the last result
    and the median time of one build."""
    times: list[float] = []
    started = time.perf_counter()
    while True:
        t = time.perf_counter()
        built = build()
        times.append(time.perf_counter() - t)
        if len(times) >= 15 or time.perf_counter() - started > budget_s:
            return built, statistics.median(times)


def _oip_json(x: np.ndarray, rid: str | None = None) -> bytes:
    tensor = {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    body: dict[str, Any] = {"inputs": [tensor]}
    if rid is not None:
        body["id"] = rid
    return json.dumps(body).encode()


class RestClient:
    """OIP REST with JSON bodies over one httpx connection pool."""

    def __init__(self, base_url: str, max_connections: int) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            timeout=httpx.Timeout(600.0),  # an 8 MB JSON body queued behind 31 others is slow
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _post(self, path: str, body: bytes) -> dict[str, Any]:
        r = await self.client.post(path, content=body, headers={"content-type": "application/json"})
        if r.status_code != 200:
            raise BenchmarkFailed(f"POST {path}: {r.status_code} {r.text[:300]}")
        answer: dict[str, Any] = json.loads(r.content)
        return answer

    def model(self, model: str, x: np.ndarray) -> Prepared:
        body, encode_s = _timed_build(lambda: _oip_json(x))
        path = f"/v2/models/{model}/infer"

        async def call() -> np.ndarray:
            out = (await self._post(path, body))["outputs"][0]
            return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])

        return Prepared(call, encode_s, len(body))

    async def pipeline(self, pipeline: str, x: np.ndarray) -> tuple[str, float, float, np.ndarray]:
        """One request-reply through a pipeline: its id, wall-clock send and receive
        times, and the reply's first output."""
        rid = uuid.uuid4().hex
        body = _oip_json(x, rid)
        sent = time.time()
        answer = await self._post(f"/v2/pipelines/{pipeline}/infer", body)
        received = time.time()
        if answer.get("id") != rid:
            raise BenchmarkFailed(f"pipeline {pipeline}: reply {answer.get('id')} for {rid}")
        out = answer["outputs"][0]
        return rid, sent, received, np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


class GrpcClient:
    """OIP gRPC (``GRPCInferenceService/ModelInfer``) over one grpc.aio channel."""

    def __init__(self, target: str) -> None:
        unlimited = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        self.channel = grpc.aio.insecure_channel(target, options=unlimited)
        self.stub = inference_pb2_grpc.GRPCInferenceServiceStub(self.channel)

    async def aclose(self) -> None:
        await self.channel.close()

    def model(self, model: str, x: np.ndarray, *, raw: bool) -> Prepared:
        # The message, not its bytes: grpc serializes it on every call, as for any client.
        request, encode_s = _timed_build(lambda: encode_request(model, {"x": x}, raw=raw))
        size = request.ByteSize()

        async def call() -> np.ndarray:
            try:
                response = await self.stub.ModelInfer(request)
            except grpc.aio.AioRpcError as exc:
                raise BenchmarkFailed(f"ModelInfer: {exc.code().name} {exc.details()}") from exc
            return decode_response(response)["y"]

        # Building the message leaves out its serialization, which a client pays too.
        _, serialize_s = _timed_build(request.SerializeToString)
        return Prepared(call, encode_s + serialize_s, size)


@dataclass(frozen=True)
class Load:
    """One closed-loop run: ``latencies_s`` of every request, ``seconds`` from the first
    send to the last answer."""

    latencies_s: list[float]
    seconds: float

    @property
    def requests(self) -> int:
        return len(self.latencies_s)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def summary(self) -> dict[str, float]:
        ms = [s * 1000 for s in self.latencies_s]
        return {
            "requests": self.requests,
            "seconds": self.seconds,
            "rps": self.rate,
            "p50_ms": percentile(ms, 50),
            "p99_ms": percentile(ms, 99),
            "mean_ms": statistics.fmean(ms),
        }


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); with fewer than 100
    values p99 lies between the two largest."""
    return float(np.percentile(values, q))


async def closed_loop(
    call: Callable[[], Awaitable[Any]], *, concurrency: int, max_requests: int, budget_s: float
) -> Load:
    """``concurrency`` callers, each sending its next request as soon as its previous one
    is answered, until ``max_requests`` were sent or ``budget_s`` passed; every caller
    sends at least one, so ``concurrency`` requests are in flight at the start."""
    latencies: list[float] = []
    sent = 0
    started = time.perf_counter()
    deadline = started + budget_s

    async def caller() -> None:
        nonlocal sent
        while sent < max_requests and (sent < concurrency or time.perf_counter() < deadline):
            sent += 1
            t = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t)

    async with asyncio.TaskGroup() as group:  # one failure cancels the other callers
        for _ in range(concurrency):
            group.create_task(caller())
    return Load(latencies, time.perf_counter() - started)
