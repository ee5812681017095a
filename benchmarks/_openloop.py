"""Open-loop load for the decoupling benchmark: notes sent at a fixed rate whatever the
answers do (so queueing shows), each with a deadline; and a closed loop for capacity.

Latency counts from the moment a request was due to be sent, so a client that falls behind
its schedule cannot hide a slow server (no coordinated omission). Every request ends in
exactly one ``Outcome``: ``result``, ``error`` (an answer that is not a result) or
``lost`` (no answer within the deadline).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from streamdag.protocol import (
    decode_response,
    encode_request,
    error_from_json,
    request_to_json,
    response_from_json,
)

__all__ = ["Outcome", "capacity", "note_body", "open_loop"]


@dataclass
class Outcome:
    index: int
    rid: str
    doc: int  # which document: the same index in every scenario
    sent_s: float  # due time, seconds from the start of the run
    status: str = "lost"  # result | error | lost
    latency_s: float | None = None
    error: str = ""
    result: dict[str, Any] | None = None
    wrong_id: bool = False  # the answer carried another request's id
    extra: dict[str, Any] = field(default_factory=dict)


def note_body(rid: str, text: str) -> bytes:
    request = encode_request("", {"text": np.array([text.encode()], dtype=object)}, id=rid)
    return json.dumps(request_to_json(request)).encode()


def canonical(arrays: dict[str, Any]) -> dict[str, Any]:
    """The answer in a comparable form: lists, bytes as text, floats to 5 places."""
    out: dict[str, Any] = {}
    for name, array in sorted(arrays.items()):
        values = np.asarray(array).reshape(-1).tolist()
        out[name] = [
            v.decode(errors="replace")
            if isinstance(v, bytes)
            else round(v, 5)
            if isinstance(v, float)
            else v
            for v in values
        ]
    return out


async def _one(client: httpx.AsyncClient, url: str, body: bytes, outcome: Outcome) -> None:
    response = await client.post(url, content=body, headers={"content-type": "application/json"})
    if response.status_code != 200:
        outcome.status = "error"
        outcome.error = f"HTTP {response.status_code}: {error_from_json(response.content)}"
        return
    reply = response_from_json(response.content)
    outcome.wrong_id = reply.id != outcome.rid
    outcome.status = "result"
    outcome.result = canonical(decode_response(reply))


async def _timed(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    outcome: Outcome,
    due: float,
    deadline_s: float,
) -> None:
    try:
        await asyncio.wait_for(_one(client, url, body, outcome), deadline_s)
    except TimeoutError:
        outcome.status = "lost"
        return
    except httpx.HTTPError as exc:
        outcome.status = "error"
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.latency_s = time.perf_counter() - due


def _client(deadline_s: float) -> httpx.AsyncClient:
    # No pool limit: an open loop must not queue in the client.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=512)
    return httpx.AsyncClient(timeout=deadline_s + 5, limits=limits)


async def open_loop(
    url: str,
    docs: Sequence[tuple[str, str]],  # (request id, note text), in send order
    *,
    rate: float,
    deadline_s: float,
    events: Sequence[tuple[float, Callable[[], Awaitable[None]]]] = (),
) -> tuple[list[Outcome], float]:
    """Send ``docs`` at ``rate`` per second; run each ``events`` action at its offset (s);
    return the outcomes and the start time (``time.time()``)."""
    bodies = [note_body(rid, text) for rid, text in docs]
    outcomes = [Outcome(i, rid, i, i / rate) for i, (rid, _) in enumerate(docs)]
    started_wall = time.time()
    started = time.perf_counter()

    async def scheduled() -> None:
        for offset, action in sorted(events, key=lambda e: e[0]):
            await asyncio.sleep(max(0.0, started + offset - time.perf_counter()))
            await action()

    async with _client(deadline_s) as client, asyncio.TaskGroup() as group:
        group.create_task(scheduled())
        for outcome, body in zip(outcomes, bodies, strict=True):
            due = started + outcome.sent_s
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            group.create_task(_timed(client, url, body, outcome, due, deadline_s))
    return outcomes, started_wall


async def capacity(
    url: str, docs: Sequence[tuple[str, str]], *, concurrency: int, seconds: float
) -> float:
    """Results per second with ``concurrency`` callers in a closed loop for ``seconds``."""
    bodies = [note_body(rid, text) for rid, text in docs]
    done = 0
    next_doc = 0
    stop = time.perf_counter() + seconds

    async def caller(client: httpx.AsyncClient) -> None:
        nonlocal done, next_doc
        while time.perf_counter() < stop and next_doc < len(bodies):
            body = bodies[next_doc]
            next_doc += 1
            r = await client.post(url, content=body, headers={"content-type": "application/json"})
            if r.status_code == 200:
                done += 1

    started = time.perf_counter()
    async with _client(60.0) as client, asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(caller(client))
    return done / (time.perf_counter() - started)
