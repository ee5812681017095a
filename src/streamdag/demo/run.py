"""``streamdag demo``: the medical-records pipeline end to end on one machine.

    models    train the example's three models, unless models of the current code exist
    Kafka     a local broker on a free port in a temporary folder, or the given cluster
    workers   two ``streamdag run`` processes: the ONNX steps, and the Python steps
    gateway   a ``Server`` (REST and gRPC on free ports) with a ``KafkaGateway``, here
    load      the notes through both front doors at once; a table and a summary
    stop      gateway, workers (SIGTERM), broker; with ``keep``, after Ctrl-C or SIGTERM

Everything started is stopped by pid or object, whatever happens on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from streamdag.demo.console import Interrupts, Progress, Say
from streamdag.demo.example import Document, MedicalRecords, example_dir
from streamdag.demo.load import Doors, send
from streamdag.demo.processes import Workers, kafka
from streamdag.demo.report import DemoReport
from streamdag.errors import StreamdagError
from streamdag.kafka import KafkaConnection
from streamdag.pipeline import PipelinePlan, compile_plan, load_spec, topics_glob
from streamdag.serving import DataPlane, KafkaGateway, Server
from streamdag.settings import get_settings

__all__ = ["DemoOptions", "run_demo"]

T = TypeVar("T")

WARM_UP_S = 120.0  # first answer: topics, consumer groups and models all come up
SAMPLE_NOTE = (
    "78 year old woman presents with shortness of breath. PMH: COPD, CKD stage 3. "
    "Denies chest pain. Assessment: COPD is worsening. Possible pneumonia. "
    "Plan: chest x-ray to r/o pneumonia."
)


@dataclass(frozen=True)
class DemoOptions:
    docs: int = 200
    kafka: KafkaConnection | None = None  # None: a local broker for the run
    kafka_config: Path | None = None  # the properties file ``kafka`` came from, if any
    keep: bool = False  # leave everything running until Ctrl-C or SIGTERM
    concurrency: int = 16  # requests in flight per front door
    example: Path | None = None  # None: example_dir() of the per-user state folder


def run_demo(
    options: DemoOptions | None = None,
    *,
    out: Say = print,
    status: Say | None = None,
) -> DemoReport:
    """Run the demo; ``out`` gets the results, ``status`` the progress (default stderr)."""
    options = options or DemoOptions()
    say = status or _stderr
    example = MedicalRecords(options.example or example_dir(get_settings().state_dir))
    say("checking the models ...")
    models = example.ensure_models()
    if models.trained:
        out(f"trained 3 models on {models.train_notes} synthetic notes in {models.seconds:.1f} s")
    else:
        out(f"models up to date (trained on {models.train_notes} synthetic notes)")
    out(f"held-out accuracy on {models.test_notes} other notes:")
    for line in models.lines:
        out("  " + line)
    docs = example.documents(options.docs)
    plan = compile_plan(load_spec(example.spec_path))
    with Interrupts() as interrupts, tempfile.TemporaryDirectory(prefix="streamdag-demo-") as tmp:
        work = Path(tmp)
        with kafka(options.kafka, work / "broker", say) as servers:
            groups = worker_groups(plan)
            with Workers(
                example.spec_path,
                servers,
                groups,
                work / "logs",
                kafka_config=options.kafka_config,
            ) as workers:
                say(
                    "workers started: "
                    + "; ".join(f"pid {w.pid} ({','.join(w.steps)})" for w in workers.workers)
                )
                session = _Session(plan, servers, workers, docs, options, out, say, interrupts)
                return asyncio.run(session.run())


def worker_groups(plan: PipelinePlan) -> list[list[str]]:
    """One process for the steps of ONNX models, one for the rest (and the output join)."""
    onnx = [
        n.name for n in plan.steps if (m := plan.model_spec(n)) is not None and m.runtime == "onnx"
    ]
    return [onnx, [name for name in plan.nodes if name not in onnx]]


class _Session:
    """The part of the demo that runs in the event loop: gateway, load, keep."""

    def __init__(
        self,
        plan: PipelinePlan,
        servers: KafkaConnection,
        workers: Workers,
        docs: list[Document],
        options: DemoOptions,
        out: Say,
        say: Say,
        interrupts: Interrupts,
    ) -> None:
        self.plan = plan
        self.servers = servers
        self.workers = workers
        self.docs = docs
        self.options = options
        self.out = out
        self.say = say
        self.interrupts = interrupts

    async def run(self) -> DemoReport:
        task = asyncio.current_task()
        assert task is not None
        with self.interrupts.cancelling(asyncio.get_running_loop(), task):
            try:
                return await self._run()
            except asyncio.CancelledError:
                if not self.interrupts.fired:
                    raise
                raise KeyboardInterrupt from None

    async def _run(self) -> DemoReport:
        gateway = KafkaGateway([self.plan], self.servers)
        server = Server(
            DataPlane([self.plan], gateway=gateway),
            host="127.0.0.1",
            http_port=0,
            grpc_port=0,
            kafka=self.servers,  # the web view reads the demo's cluster, not the settings'
        )
        self.say("starting the gateway (REST and gRPC) ...")
        async with server:
            doors = Doors(
                f"127.0.0.1:{server.http_port}", f"127.0.0.1:{server.grpc_port}", self.plan.name
            )
            self.say(f"gateway ready: REST {doors.http}, gRPC {doors.grpc}; warming up ...")
            started = time.perf_counter()
            await self._watching(self._warm_up(doors))
            self.say(f"first answers after {time.perf_counter() - started:.1f} s")
            self.say(
                f"sending {len(self.docs)} documents, {self.options.concurrency} at a time "
                "through each of REST and gRPC ..."
            )
            started = time.perf_counter()
            answers = await self._watching(
                send(
                    doors,
                    self.docs,
                    concurrency=self.options.concurrency,
                    progress=Progress(self.say),
                )
            )
            report = DemoReport(answers, time.perf_counter() - started)
            self.out("")
            for line in [*report.table(), "", *report.summary()]:
                self.out(line)
            if self.options.keep:
                await self._keep(doors)
            self.say("stopping the gateway ...")
        return report

    async def _warm_up(self, doors: Doors) -> None:
        """One note through each door, so that the figures measure the pipeline and not
        the start of its consumer groups; retried while they are still joining."""
        deadline = time.monotonic() + WARM_UP_S
        note = Document("warm-up", SAMPLE_NOTE, (), 0.0)
        attempt = 0
        while True:
            attempt += 1
            docs = [
                Document(f"{note.id}-{attempt}-{door}", note.text, (), 0.0) for door in ("r", "g")
            ]
            answers = await send(doors, docs, concurrency=1, timeout=WARM_UP_S)
            failed = [a for a in answers if a.error is not None]
            if not failed:
                return
            if any(not a.timed_out for a in failed) or time.monotonic() > deadline:
                raise StreamdagError(f"the pipeline does not answer: {failed[0].error}")

    async def _keep(self, doors: Doors) -> None:
        """Print where everything is, then wait for Ctrl-C or SIGTERM (or a dead worker)."""
        p = self.plan.name
        ui = False  # the web view comes with newer servers: name it only where it answers
        async with httpx.AsyncClient(follow_redirects=True) as http:
            with contextlib.suppress(httpx.HTTPError):
                ui = (await http.get(f"http://{doors.http}/ui")).status_code == 200
        streamdag = _relative(Path(sys.executable).with_name("streamdag"))
        spec = _relative(self.workers.spec)
        lines = [
            "",
            "Everything keeps running; press Ctrl-C (or send SIGTERM) to stop it all.",
            f"  REST     http://{doors.http}/v2/pipelines/{p}/infer",
            f"  gRPC     {doors.grpc}  (GRPCInferenceService/ModelInfer, model_name {p})",
            *([f"  web view http://{doors.http}/ui"] if ui else []),
            f"  models   http://{doors.http}/v2/models/<name>/infer  (each model alone, too)",
            f"  Kafka    {self.servers}  (topics {topics_glob(p)})",
            *(
                f"  worker   pid {w.pid}, steps {','.join(w.steps)}, log {w.log}"
                for w in self.workers.workers
            ),
            "Try:",
            f"  curl -s http://{doors.http}/v2/pipelines/{p}/infer "
            "-H 'content-type: application/json' -d "
            f"""'{{"inputs": [{{"name": "text", "shape": [1], "datatype": "BYTES", """
            f""""data": ["{SAMPLE_NOTE}"]}}]}}'""",
            f"  {streamdag} run {spec} --bootstrap {self.servers.bootstrap_servers}"
            + (f" --kafka-config {self.options.kafka_config}" if self.options.kafka_config else "")
            + " --steps coder"
            "   # one more coder worker",
        ]
        for line in lines:
            self.out(line)
        task = asyncio.current_task()
        try:
            await self._watching(asyncio.Event().wait())
        except asyncio.CancelledError:
            if not self.interrupts.fired or task is None:
                raise
            task.uncancel()  # the expected way out of keep: stop everything, exit 0
            self.say("stopping ...")

    async def _watching(self, job: Awaitable[T]) -> T:
        """Await ``job`` while checking every half second that the workers still run."""
        future = asyncio.ensure_future(job)
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=0.5)
                if done:
                    return future.result()
                self.workers.check()
        finally:
            if not future.done():
                future.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await future


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return os.path.relpath(path)
    return str(path)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
