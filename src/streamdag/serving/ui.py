"""The web view of ``streamdag serve`` at ``/ui``: each pipeline's DAG with live figures
per step, a request search and the latest errors.

The page (``ui_static/``: plain HTML, JavaScript and CSS that load nothing from elsewhere)
draws the graph from ``/ui/api/pipelines/<p>/graph`` as SVG and polls ``.../stats``. The
figures come from Kafka (``streamdag.observability.live``), so they cover the workers of
every process. One snapshot per pipeline serves every viewer for ``refresh_s`` seconds:
many open pages cost what one does. Everything here only reads.

Kafka is read in the view's own ``SCAN_THREADS`` threads (a ``ScanPool``), never on the
event loop nor in the loop's default executor, where served models run ``predict``:
however many searches come at once, an inference never waits for a thread behind them.
Searches beyond the threads queue; one that finds ``MAX_WAITING`` reads queued ahead of it
is answered 503 with a ``Retry-After``. Snapshots always queue (there is at most one per
pipeline at a time).

On a server that checks tokens, what records hold is for administrators (``auth``): the
request search answers anyone else 403, and the latest errors come to them without their
headers and tensors. The graph and the figures are for every token holder.

Tensors come as datatype, shape and digest; their first values only with ``?values=1``,
which a server started without ``show_values`` (``serve --ui-show-values``) refuses with
403: in a medical pipeline the values are patient text, and a page left open on a screen
should not show them unless the operator chose so.

    GET /ui/                                   the page
    GET /ui/api/settings                       whether values may be shown (show_values)
    GET /ui/api/pipelines                      name, version, guarantee, partitions
    GET /ui/api/pipelines/<p>/graph            nodes (steps, topics) and edges of the DAG
    GET /ui/api/pipelines/<p>/stats            live figures per step, error counts, and
                                               the pipeline's readiness (workers per step)
    GET /ui/api/pipelines/<p>/errors           the latest records of the errors topic
                                               (?values=1: with tensors' first values)
    GET /ui/api/pipelines/<p>/jobs             its bulk jobs with their counts, newest first
    GET /ui/api/pipelines/<p>/requests/<id>    every record of a request (``inspect``;
                                               ?values=1: with tensors' first values)
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from importlib.resources import files
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from streamdag.bulk.state import JobBook
from streamdag.errors import (
    ConfigError,
    InvalidInput,
    KafkaOperationError,
    PermissionDenied,
    PipelineNotFound,
    Unavailable,
)
from streamdag.kafka import KafkaConnection
from streamdag.observability.inspect import trace_request
from streamdag.observability.live import LiveStats, PipelineFigures
from streamdag.observability.scan import TopicReader, parse_since
from streamdag.payloads import PayloadStore
from streamdag.pipeline import NodeKind, PipelinePlan, PlanNode
from streamdag.pipeline.spec import PIPELINE_SOURCE
from streamdag.serving.auth import ADMIN, CALLER_STATE, Caller
from streamdag.serving.dataplane import DataPlane
from streamdag.serving.scan_pool import ScanPool

__all__ = ["pipeline_graph", "ui_router"]

STATIC: Final[dict[str, str]] = {
    "index.html": "text/html; charset=utf-8",
    "ui.js": "text/javascript; charset=utf-8",
    "ui.css": "text/css; charset=utf-8",
}
_SEARCH_TIMEOUT_S = 15.0
# Reads are mostly Python work on records: more threads than a small machine's cores would
# only share the same CPU, and take it from inference.
SCAN_THREADS: Final = 2
MAX_WAITING: Final = 8  # then 503: a search would wait four rounds of searches
RETRY_AFTER_S: Final = 2


def ui_router(
    dataplane: DataPlane,
    *,
    kafka: KafkaConnection | str | None = None,
    payloads: PayloadStore | None = None,
    restricted: bool = False,
    refresh_s: float = 1.5,
    show_values: bool = False,
) -> APIRouter:
    """The ``/ui`` routes over the pipelines of ``dataplane``, read from Kafka at
    ``kafka`` (default: the ``STREAMDAG_*`` settings); a request search shows the tensors
    of records whose values are in ``payloads`` (the store the gateway writes to).
    ``restricted`` (the server checks tokens): records' contents only to administrators.
    ``show_values``: tensors' first values to a viewer who asks (``?values=1``)."""
    kafka_conn = KafkaConnection.from_settings() if kafka is None else KafkaConnection.of(kafka)
    plans = {plan.name: plan for plan in dataplane.plans()}
    scans = ScanPool(SCAN_THREADS, name="streamdag-ui")
    snapshots = _Snapshots(plans, kafka_conn, refresh_s, scans)
    router = APIRouter(prefix="/ui")

    def may_read_records(request: Request) -> bool:
        caller: Caller | None = getattr(request.state, CALLER_STATE, None)
        return not restricted or (caller is not None and caller.admin)

    def values_wanted(values: bool) -> bool:
        if values and not show_values:
            raise PermissionDenied(
                "this server's web view shows no tensor values: start `streamdag serve` "
                "with --ui-show-values to allow them"
            )
        return values

    def plan_of(pipeline: str) -> PipelinePlan:
        if pipeline not in plans:
            raise PipelineNotFound(pipeline)
        return plans[pipeline]

    @router.get("")
    async def ui_root() -> Response:
        # The page links its files relatively, so it must be addressed as a folder.
        return RedirectResponse("ui/", status_code=307)

    @router.get("/")
    async def ui_page() -> Response:
        return _static("index.html")

    @router.get("/static/{name}")
    async def ui_static(name: str) -> Response:
        return _static(name)

    @router.get("/api/settings")
    async def ui_settings() -> Response:
        return JSONResponse({"show_values": show_values})

    @router.get("/api/pipelines")
    async def ui_pipelines() -> Response:
        return JSONResponse(
            [
                {
                    "name": p.name,
                    "version": p.version,
                    "guarantee": p.guarantee,
                    "partitions": p.partitions,
                }
                for p in plans.values()
            ]
        )

    @router.get("/api/pipelines/{pipeline}/graph")
    async def ui_graph(pipeline: str) -> Response:
        return JSONResponse(pipeline_graph(plan_of(pipeline)))

    @router.get("/api/pipelines/{pipeline}/stats")
    async def ui_stats(request: Request, pipeline: str) -> Response:
        plan_of(pipeline)
        figures = await snapshots.get(pipeline)
        body = _figures_json(figures, full=may_read_records(request))
        if pipeline in dataplane.pipelines():
            body["readiness"] = dataclasses.asdict(dataplane.pipeline_readiness(pipeline))
        return JSONResponse(body)

    @router.get("/api/pipelines/{pipeline}/errors")
    async def ui_errors(request: Request, pipeline: str, values: bool = False) -> Response:
        plan_of(pipeline)
        shown = values_wanted(values)
        figures = await snapshots.get(pipeline)
        return JSONResponse(
            {
                "errors": figures.errors,
                "by_code": figures.errors_by_code,
                "latest": _latest_json(figures, full=may_read_records(request), values=shown),
            }
        )

    @router.get("/api/pipelines/{pipeline}/jobs")
    async def ui_jobs(pipeline: str) -> Response:
        plan_of(pipeline)
        return JSONResponse({"jobs": await snapshots.jobs(pipeline)})

    @router.get("/api/pipelines/{pipeline}/requests/{request_id:path}")
    async def ui_request(
        request: Request,
        pipeline: str,
        request_id: str,
        since: str | None = None,
        values: bool = False,
    ) -> Response:
        plan = plan_of(pipeline)
        shown = values_wanted(values)
        if not may_read_records(request):
            raise PermissionDenied(
                "the request search shows what callers sent: on a server that checks tokens "
                f"it is for administrators (a token marked `{ADMIN}` in the tokens file)"
            )
        try:
            since_ms = parse_since(since) if since else None
        except ConfigError as exc:
            raise InvalidInput(exc.message) from None
        if scans.waiting >= MAX_WAITING:
            return JSONResponse(
                {
                    "error": f"the web view is busy: {scans.waiting} reads of Kafka wait their "
                    f"turn; try again in {RETRY_AFTER_S} s"
                },
                status_code=503,
                headers={"retry-after": str(RETRY_AFTER_S)},
            )
        try:
            trace = await scans.run(
                trace_request,
                plan,
                kafka_conn,
                request_id,
                since_ms=since_ms,
                timeout=_SEARCH_TIMEOUT_S,
                payloads=payloads,
            )
        except KafkaOperationError as exc:
            raise Unavailable(exc.message) from exc
        return JSONResponse(trace.to_dict(values=shown))

    return router


def pipeline_graph(plan: PipelinePlan) -> dict[str, Any]:
    """The DAG of ``plan`` for drawing: nodes with a ``layer`` (the longest path from the
    inputs topic) and edges labelled with the tensors they carry and the triggers they
    fire. Node ids are step names and ``inputs``, ``outputs``, ``errors``, ``output`` (the
    assembler of several output steps): names a step cannot have."""
    layer = {PIPELINE_SOURCE: 0}
    nodes: list[dict[str, Any]] = [_topic("inputs", plan.inputs_topic, 0)]
    edges: list[dict[str, Any]] = []
    for node in plan.nodes.values():
        layer[node.name] = 1 + max(layer[s] for s in node.sources)
        nodes.append(_node(plan, node, layer[node.name]))
        for source in node.sources:
            edges.append(
                {
                    "from": "inputs" if source == PIPELINE_SOURCE else source,
                    "to": node.name,
                    "tensors": [r.tensor or "*" for r in node.refs if r.source == source],
                    "when": [r.tensor for r in node.triggers if r.source == source],
                }
            )
    # The node that writes the final response: the sole output step, or the assembler.
    final = next(n for n in plan.nodes.values() if n.final_topic is not None)
    last = layer[final.name]
    edges.append(_edge(final.name, "outputs"))
    nodes.append(_topic("outputs", plan.outputs_topic, last + 1))
    nodes.append(_topic("errors", plan.errors_topic, last + 1, kind="errors"))
    return {
        "pipeline": plan.name,
        "version": plan.version,
        "guarantee": plan.guarantee,
        "partitions": plan.partitions,
        "nodes": nodes,
        "edges": edges,
    }


def _node(plan: PipelinePlan, node: PlanNode, layer: int) -> dict[str, Any]:
    join = node.join.value if node.join is not None else None
    window = node.join_window_ms if node.join is not None else None
    if node.kind is NodeKind.ASSEMBLER:
        return {
            "id": node.name,
            "kind": "join",
            "label": node.name,
            "topic": node.outputs_topic,
            "group": node.group,
            "join": join,
            "window_ms": window,
            "layer": layer,
        }
    model = plan.model_spec(node)
    assert model is not None  # every step has one
    return {
        "id": node.name,
        "kind": "step",
        "label": node.name,
        "model": node.model,
        "runtime": model.runtime,
        "topic": node.outputs_topic,
        "group": node.group,
        "join": join,
        "window_ms": window,
        "when": [str(r) for r in node.triggers],
        "output": node.name in plan.output_steps,
        "layer": layer,
    }


def _topic(node_id: str, topic: str, layer: int, kind: str = "topic") -> dict[str, Any]:
    return {"id": node_id, "kind": kind, "label": node_id, "topic": topic, "layer": layer}


def _edge(source: str, target: str) -> dict[str, Any]:
    return {"from": source, "to": target, "tensors": ["*"], "when": []}


def _figures_json(figures: PipelineFigures, *, full: bool) -> dict[str, Any]:
    body = {
        f.name: getattr(figures, f.name)
        for f in dataclasses.fields(figures)
        if f.name != "latest_errors"
    }
    body["inputs"] = dataclasses.asdict(figures.inputs)
    body["outputs"] = dataclasses.asdict(figures.outputs)
    body["steps"] = [dataclasses.asdict(s) for s in figures.steps]
    body["latest_errors"] = _latest_json(figures, full=full)
    return body


def _latest_json(
    figures: PipelineFigures, *, full: bool, values: bool = False
) -> list[dict[str, Any]]:
    """The latest errors, newest first; without ``full``, without what the caller sent
    (headers, tensors, the decoding problem that may quote them); tensors' first values
    only with ``values``."""
    latest = [r.to_dict(values=values) for r in reversed(figures.latest_errors)]
    if not full:
        for record in latest:
            record.update(headers={}, tensors=[], problem=None)
    return latest


def _static(name: str) -> Response:
    media_type = STATIC.get(name)
    if media_type is None:
        return JSONResponse({"error": f"no file {name} in the web view"}, status_code=404)
    content = files("streamdag.serving").joinpath("ui_static", name).read_bytes()
    return Response(content, media_type=media_type, headers={"cache-control": "no-cache"})


class _Snapshots:
    """One ``LiveStats`` and one ``JobBook`` per pipeline, and the last snapshot of each
    while it is fresh."""

    def __init__(
        self,
        plans: dict[str, PipelinePlan],
        kafka: KafkaConnection,
        refresh_s: float,
        pool: ScanPool,
    ) -> None:
        self.refresh_s = refresh_s
        self.kafka = kafka
        self._pool = pool
        self._stats = {name: LiveStats(plan, kafka) for name, plan in plans.items()}
        self._books = {name: JobBook(name) for name in plans}
        self._taken: dict[tuple[str, str], tuple[float, Any]] = {}
        self._waits = {(name, kind): asyncio.Lock() for name in plans for kind in _KINDS}
        # A read outlives a viewer who went away (threads cannot be cancelled): the next
        # one must wait for it, not run beside it.
        self._reading = {(name, kind): threading.Lock() for name in plans for kind in _KINDS}

    async def get(self, pipeline: str) -> PipelineFigures:
        figures: PipelineFigures = await self._fresh(pipeline, "figures")
        return figures

    async def jobs(self, pipeline: str) -> list[dict[str, Any]]:
        """The pipeline's jobs as ``streamdag jobs`` counts them, newest first."""
        jobs: list[dict[str, Any]] = await self._fresh(pipeline, "jobs")
        return jobs

    async def _fresh(self, pipeline: str, kind: str) -> Any:
        async with self._waits[(pipeline, kind)]:
            taken = self._taken.get((pipeline, kind))
            if taken is not None and time.monotonic() - taken[0] < self.refresh_s:
                return taken[1]
            try:
                found = await self._pool.run(self._read, pipeline, kind)
            except KafkaOperationError as exc:
                raise Unavailable(f"pipeline {pipeline}: {exc.message}") from exc
            self._taken[(pipeline, kind)] = (time.monotonic(), found)
            return found

    def _read(self, pipeline: str, kind: str) -> Any:
        with self._reading[(pipeline, kind)]:
            if kind == "figures":
                return self._stats[pipeline].read()
            with TopicReader(self.kafka, client_id="streamdag-live") as reader:
                jobs = self._books[pipeline].update(reader)
            return [s.counts() for s in sorted(jobs.values(), key=lambda s: -s.updated)]


_KINDS: Final = ("figures", "jobs")
