"""The REST chain's orchestrator: the medical-records DAG as a service that calls one model
server per model over OIP REST, the way a team would write it before Kafka.

    python _chain.py PORT PIPELINE_NAME MODEL=HOST:PORT ... [--timeout-s 5] [--retries 2]

``POST /v2/pipelines/<name>/infer`` takes the body the streamdag gateway takes (one note
in ``text``) and answers with the pipeline's outputs (the risk merged with whichever
branch ran). Per note: normalize; sections, entities and assertion at once; icd10; then
hcc at once with gate and its branch (accept or review). Each call has a timeout and is
retried ``retries`` times with exponential backoff and jitter on a connection error, a
timeout or HTTP 502/503/504; a model's own error (HTTP 4xx/500) is not retried. A failure
answers HTTP 502 (504 when a model never answered) with an error naming the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from typing import Any

import httpx
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from streamdag.protocol import (
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    error_from_json,
    request_from_json,
    request_to_json,
    response_from_json,
    response_to_json,
)

Arrays = dict[str, Any]
RETRY_STATUS = {502, 503, 504}
BACKOFF_S = 0.1


class ChainFailed(Exception):
    def __init__(self, model: str, message: str, *, timed_out: bool) -> None:
        super().__init__(f"model {model} failed: {message}")
        self.model = model
        self.timed_out = timed_out


class Chain:
    def __init__(self, urls: dict[str, str], timeout_s: float, retries: int) -> None:
        self.timeout_s = timeout_s
        self.retries = retries
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        self.clients = {
            m: httpx.AsyncClient(base_url=f"http://{u}", timeout=timeout_s, limits=limits)
            for m, u in urls.items()
        }

    async def call(self, model: str, arrays: Arrays) -> Arrays:
        body = request_to_json(encode_request(model, arrays))
        last = ""
        timed_out = False
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
            try:
                reply = await self.clients[model].post(f"/v2/models/{model}/infer", json=body)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                timed_out = isinstance(exc, httpx.TimeoutException)
                continue
            if reply.status_code == 200:
                return decode_response(response_from_json(reply.content))
            last = f"HTTP {reply.status_code}: {error_from_json(reply.content)}"
            timed_out = False
            if reply.status_code not in RETRY_STATUS:
                break
        raise ChainFailed(model, last, timed_out=timed_out)

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    async def note(self, text: Any) -> Arrays:
        coded = await self.call("icd10", await self.coder_inputs(text))
        async with asyncio.TaskGroup() as group:
            risk = group.create_task(
                self.call("hcc", {k: coded[k] for k in ("supported", "age", "sex")})
            )
            routed = group.create_task(self._route(coded))
        return {**risk.result(), **routed.result()}

    async def coder_inputs(self, text: Any) -> Arrays:
        """What icd10 takes: normalize's outputs and the three classifiers' labels."""
        norm = await self.call("normalize", {"text": text})
        clauses = {"clauses": norm["clauses"]}
        async with asyncio.TaskGroup() as group:
            tasks = {
                m: group.create_task(self.call(m, clauses))
                for m in ("sections", "entities", "assertion")
            }
        sec, ent, ass = (tasks[m].result() for m in ("sections", "entities", "assertion"))
        return {
            **norm,
            "section": sec["label"],
            "section_score": sec["score"],
            "concept": ent["label"],
            "concept_score": ent["score"],
            "assertion": ass["label"],
            "assertion_score": ass["score"],
        }

    async def _route(self, coded: Arrays) -> Arrays:
        gated = await self.call(
            "gate", {k: coded[k] for k in ("codes", "confidence", "weakest", "queries")}
        )
        if bool(np.asarray(gated["accepted"]).reshape(-1)[0]):
            return await self.call("accept", {k: gated[k] for k in ("codes", "confidence")})
        return await self.call("review", {k: gated[k] for k in ("codes", "confidence", "reason")})


def app(pipeline: str, chain: Chain) -> Starlette:
    async def infer(request: Request) -> JSONResponse:
        req = request_from_json(await request.body(), model_name=pipeline)
        try:
            outputs = await chain.note(decode_request(req)["text"])
        except (ChainFailed, ExceptionGroup) as exc:
            failed = _first_failure(exc)
            status = 504 if failed.timed_out else 502
            return JSONResponse({"error": str(failed)}, status_code=status)
        return JSONResponse(response_to_json(encode_response(pipeline, outputs, id=req.id)))

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({})

    return Starlette(
        routes=[
            Route(f"/v2/pipelines/{pipeline}/infer", infer, methods=["POST"]),
            Route("/v2/health/ready", ready),
        ]
    )


def _first_failure(exc: BaseException) -> ChainFailed:
    """The model failure inside the task groups' exceptions (re-raised if there is none)."""
    if isinstance(exc, ChainFailed):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            with contextlib.suppress(BaseException):
                return _first_failure(inner)
    raise exc


def main(argv: list[str]) -> None:
    port, pipeline = int(argv[0]), argv[1]
    options = {"--timeout-s": "5", "--retries": "2"}
    urls: dict[str, str] = {}
    rest = iter(argv[2:])
    for arg in rest:
        if arg in options:
            options[arg] = next(rest)
        else:
            model, url = arg.split("=", 1)
            urls[model] = url
    chain = Chain(urls, float(options["--timeout-s"]), int(options["--retries"]))
    uvicorn.run(
        app(pipeline, chain), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main(sys.argv[1:])
