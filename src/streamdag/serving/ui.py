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

    GET /ui/                                   the page
    GET /ui/api/pipelines                      name, version, guarantee, partitions
    GET /ui/api/pipelines/<p>/graph            nodes (steps, topics) and edges of the DAG
    GET /ui/api/pipelines/<p>/stats            live figures per step, error counts
    GET /ui/api/pipelines/<p>/errors           the latest records of the errors topic
    GET /ui/api/pipelines/<p>/requests/<id>    every record of a request (``inspect``)
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from importlib.resources import files
from typing import Any, Final

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, RedirectResponse

from streamdag.errors import ConfigError, InvalidInput, KafkaError, PipelineNotFound, Unavailable
from streamdag.kafka import KafkaConnection
from streamdag.observability.inspect import trace_request
from streamdag.observability.live import LiveStats, PipelineFigures
from streamdag.observability.scan import parse_since
from streamdag.pipeline import (
    PipelineSpec,
    build_graph,
    consumer_group,
    errors_topic,
    inputs_topic,
    outputs_topic,
    step_outputs_topic,
)
from streamdag.pipeline.spec import PIPELINE_SOURCE
from streamdag.pipeline.topics import OUTPUT_JOIN
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
    refresh_s: float = 1.5,
) -> APIRouter:
    """The ``/ui`` routes over the pipelines of ``dataplane``, read from Kafka at
    ``kafka`` (default: the ``STREAMDAG_*`` settings)."""
    kafka_conn = KafkaConnection.from_settings() if kafka is None else KafkaConnection.of(kafka)
    specs = {spec.name: spec for spec in dataplane.specs()}
    scans = ScanPool(SCAN_THREADS, name="streamdag-ui")
    snapshots = _Snapshots(specs, kafka_conn, refresh_s, scans)
    router = APIRouter(prefix="/ui")

    def spec_of(pipeline: str) -> PipelineSpec:
        if pipeline not in specs:
            raise PipelineNotFound(pipeline)
        return specs[pipeline]

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

    @router.get("/api/pipelines")
    async def ui_pipelines() -> Response:
        return JSONResponse(
            [
                {
                    "name": s.name,
                    "version": str(s.version),
                    "guarantee": s.guarantee,
                    "partitions": s.partitions,
                }
                for s in specs.values()
            ]
        )

    @router.get("/api/pipelines/{pipeline}/graph")
    async def ui_graph(pipeline: str) -> Response:
        return JSONResponse(pipeline_graph(spec_of(pipeline)))

    @router.get("/api/pipelines/{pipeline}/stats")
    async def ui_stats(pipeline: str) -> Response:
        spec_of(pipeline)
        return JSONResponse(_figures_json(await snapshots.get(pipeline)))

    @router.get("/api/pipelines/{pipeline}/errors")
    async def ui_errors(pipeline: str) -> Response:
        spec_of(pipeline)
        figures = await snapshots.get(pipeline)
        return JSONResponse(
            {
                "errors": figures.errors,
                "by_code": figures.errors_by_code,
                "latest": [r.to_dict() for r in reversed(figures.latest_errors)],
            }
        )

    @router.get("/api/pipelines/{pipeline}/requests/{request_id:path}")
    async def ui_request(pipeline: str, request_id: str, since: str | None = None) -> Response:
        spec = spec_of(pipeline)
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
                spec,
                kafka_conn,
                request_id,
                since_ms=since_ms,
                timeout=_SEARCH_TIMEOUT_S,
            )
        except KafkaError as exc:
            raise Unavailable(exc.message) from exc
        return JSONResponse(trace.to_dict())

    return router


def pipeline_graph(spec: PipelineSpec) -> dict[str, Any]:
    """The DAG of ``spec`` for drawing: nodes with a ``layer`` (the longest path from the
    inputs topic) and edges labelled with the tensors they carry and the triggers they
    fire. Node ids are step names and ``inputs``, ``outputs``, ``errors``, ``output`` (the
    assembler of several output steps): names a step cannot have."""
    p, graph = spec.name, build_graph(spec)
    layer = {PIPELINE_SOURCE: 0}
    nodes: list[dict[str, Any]] = [_topic("inputs", inputs_topic(p), 0)]
    edges: list[dict[str, Any]] = []
    for name in graph.steps:
        node = graph.nodes[name]
        step = node.spec
        assert step is not None  # a step node
        layer[name] = 1 + max(layer[s] for s in node.sources)
        nodes.append(
            {
                "id": name,
                "kind": "step",
                "label": name,
                "model": step.model,
                "runtime": spec.models[step.model].runtime,
                "topic": step_outputs_topic(p, name),
                "group": consumer_group(p, name),
                "join": node.join_mode if node.is_join else None,
                "window_ms": step.join_window_ms if node.is_join else None,
                "when": list(step.when),
                "output": name in spec.output_steps,
                "layer": layer[name],
            }
        )
        for source in node.sources:
            edges.append(
                {
                    "from": "inputs" if source == PIPELINE_SOURCE else source,
                    "to": name,
                    "tensors": [r.tensor or "*" for r in step.input_refs if r.source == source],
                    "when": [r.tensor for r in step.trigger_refs if r.source == source],
                }
            )
    outputs = spec.output_steps
    last = max(layer[s] for s in outputs)
    if len(outputs) > 1:
        last += 1
        nodes.append(
            {
                "id": OUTPUT_JOIN,
                "kind": "join",
                "label": OUTPUT_JOIN,
                "topic": outputs_topic(p),
                "group": consumer_group(p, OUTPUT_JOIN),
                "join": spec.output.join,
                "window_ms": spec.output.join_window_ms,
                "layer": last,
            }
        )
        edges += [_edge(s, OUTPUT_JOIN) for s in outputs]
        edges.append(_edge(OUTPUT_JOIN, "outputs"))
    else:
        edges.append(_edge(outputs[0], "outputs"))
    nodes.append(_topic("outputs", outputs_topic(p), last + 1))
    nodes.append(_topic("errors", errors_topic(p), last + 1, kind="errors"))
    return {
        "pipeline": p,
        "version": str(spec.version),
        "guarantee": spec.guarantee,
        "partitions": spec.partitions,
        "nodes": nodes,
        "edges": edges,
    }


def _topic(node_id: str, topic: str, layer: int, kind: str = "topic") -> dict[str, Any]:
    return {"id": node_id, "kind": kind, "label": node_id, "topic": topic, "layer": layer}


def _edge(source: str, target: str) -> dict[str, Any]:
    return {"from": source, "to": target, "tensors": ["*"], "when": []}


def _figures_json(figures: PipelineFigures) -> dict[str, Any]:
    body = {
        f.name: getattr(figures, f.name)
        for f in dataclasses.fields(figures)
        if f.name != "latest_errors"
    }
    body["inputs"] = dataclasses.asdict(figures.inputs)
    body["outputs"] = dataclasses.asdict(figures.outputs)
    body["steps"] = [dataclasses.asdict(s) for s in figures.steps]
    body["latest_errors"] = [r.to_dict() for r in reversed(figures.latest_errors)]
    return body


def _static(name: str) -> Response:
    media_type = STATIC.get(name)
    if media_type is None:
        return JSONResponse({"error": f"no file {name} in the web view"}, status_code=404)
    content = files("streamdag.serving").joinpath("ui_static", name).read_bytes()
    return Response(content, media_type=media_type, headers={"cache-control": "no-cache"})


class _Snapshots:
    """One ``LiveStats`` per pipeline, and its last snapshot while it is fresh."""

    def __init__(
        self,
        specs: dict[str, PipelineSpec],
        kafka: KafkaConnection,
        refresh_s: float,
        pool: ScanPool,
    ) -> None:
        self.refresh_s = refresh_s
        self._pool = pool
        self._stats = {name: LiveStats(spec, kafka) for name, spec in specs.items()}
        self._taken: dict[str, tuple[float, PipelineFigures]] = {}
        self._waits = {name: asyncio.Lock() for name in specs}
        # A read outlives a viewer who went away (threads cannot be cancelled): the next
        # one must wait for it, not run beside it.
        self._reading = {name: threading.Lock() for name in specs}

    async def get(self, pipeline: str) -> PipelineFigures:
        async with self._waits[pipeline]:
            taken = self._taken.get(pipeline)
            if taken is not None and time.monotonic() - taken[0] < self.refresh_s:
                return taken[1]
            try:
                figures = await self._pool.run(self._read, pipeline)
            except KafkaError as exc:
                raise Unavailable(f"pipeline {pipeline}: {exc.message}") from exc
            self._taken[pipeline] = (time.monotonic(), figures)
            return figures

    def _read(self, pipeline: str) -> PipelineFigures:
        with self._reading[pipeline]:
            return self._stats[pipeline].read()
