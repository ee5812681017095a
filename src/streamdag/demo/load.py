"""Send the demo's documents through the pipeline's two front doors at once.

Even-numbered documents go to ``POST /v2/pipelines/<p>/infer`` (REST, JSON), odd ones to
gRPC ``ModelInfer`` with ``model_name`` = the pipeline, each door with ``concurrency``
requests in flight, as independent clients would. Every document gets an ``Answer``: the
pipeline's reply, or the error the front door returned.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np

from streamdag.demo.example import Document
from streamdag.protocol import (
    decode_response,
    encode_request,
    inference_pb2_grpc,
    request_to_json,
    response_from_json,
)
from streamdag.protocol.datatypes import Arrays
from streamdag.protocol.jsonform import error_from_json

__all__ = ["Answer", "Doors", "send"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Doors:
    http: str  # host:port of the REST door
    grpc: str  # host:port of the gRPC door
    pipeline: str


@dataclass
class Answer:
    doc: Document
    door: str  # "REST" or "gRPC"
    latency_ms: float
    error: str | None = None
    timed_out: bool = False
    route: str = ""
    queue: str = ""
    reason: str = ""
    codes: tuple[str, ...] = ()
    hccs: str = ""
    risk_score: float = math.nan
    confidence: float = math.nan

    @property
    def codes_match(self) -> bool:
        return self.error is None and set(self.codes) == set(self.doc.codes)

    @property
    def risk_matches(self) -> bool:
        return self.error is None and abs(self.risk_score - self.doc.risk_score) < 1e-3


def request_for(pipeline: str, doc: Document) -> Any:
    text = np.array([doc.text.encode()], dtype=object)
    return encode_request(pipeline, {"text": text}, id=doc.id)


async def send(
    doors: Doors,
    docs: Sequence[Document],
    *,
    concurrency: int = 16,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> list[Answer]:
    """Every document through one of the doors; answers in the order of ``docs``."""
    done = 0
    limits = {"REST": asyncio.Semaphore(concurrency), "gRPC": asyncio.Semaphore(concurrency)}
    async with (
        httpx.AsyncClient(
            base_url=f"http://{doors.http}",
            timeout=timeout,
            limits=httpx.Limits(max_connections=concurrency),
        ) as http,
        grpc.aio.insecure_channel(doors.grpc) as channel,
    ):
        make_stub: Any = inference_pb2_grpc.GRPCInferenceServiceStub  # generated, untyped
        stub = make_stub(channel)

        async def one(i: int, doc: Document) -> Answer:
            nonlocal done
            door = "REST" if i % 2 == 0 else "gRPC"
            async with limits[door]:
                if door == "REST":
                    answer = await _rest(http, doors.pipeline, doc)
                else:
                    answer = await _grpc(stub, doors.pipeline, doc, timeout)
            done += 1
            if progress is not None:
                progress(done, len(docs))
            return answer

        return list(await asyncio.gather(*(one(i, d) for i, d in enumerate(docs))))


async def _rest(http: httpx.AsyncClient, pipeline: str, doc: Document) -> Answer:
    body = request_to_json(request_for(pipeline, doc))
    started = time.perf_counter()
    try:
        reply = await http.post(f"/v2/pipelines/{pipeline}/infer", json=body)
    except httpx.HTTPError as exc:
        return _failed(doc, "REST", started, f"{type(exc).__name__}: {exc}", timed_out=True)
    if reply.status_code != 200:
        return _failed(
            doc,
            "REST",
            started,
            f"HTTP {reply.status_code}: {error_from_json(reply.content)}",
            timed_out=reply.status_code == 504,
        )
    return _answer(doc, "REST", started, decode_response(response_from_json(reply.content)))


async def _grpc(stub: Any, pipeline: str, doc: Document, timeout: float) -> Answer:
    started = time.perf_counter()
    try:
        reply = await stub.ModelInfer(request_for(pipeline, doc), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        late = exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        return _failed(doc, "gRPC", started, f"{exc.code().name}: {exc.details()}", timed_out=late)
    return _answer(doc, "gRPC", started, decode_response(reply))


def _failed(doc: Document, door: str, started: float, error: str, *, timed_out: bool) -> Answer:
    latency = (time.perf_counter() - started) * 1000
    return Answer(doc, door, latency, error=error, timed_out=timed_out)


def _answer(doc: Document, door: str, started: float, arrays: Arrays) -> Answer:
    latency = (time.perf_counter() - started) * 1000

    def text(name: str) -> str:
        value = arrays.get(name)
        if value is None or value.size == 0:
            return ""
        item = value.reshape(-1)[0]
        return item.decode() if isinstance(item, bytes) else str(item)

    def number(name: str) -> float:
        value = arrays.get(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size else math.nan

    if not text("route"):
        return _failed(doc, door, started, "the reply has no route", timed_out=False)
    return Answer(
        doc,
        door,
        latency,
        route=text("route"),
        queue=text("queue"),
        reason=text("reason"),
        codes=tuple(text("codes").split()),
        hccs=text("hccs"),
        risk_score=number("risk_score"),
        confidence=number("confidence"),
    )
