"""The two ways the decoupling benchmark runs the medical-records models, each in child
processes that the caller's ``Children`` (or, for workers, ``stop``) ends whatever happens:

    RestChain   one model server per model (``_model_server.py``) and the orchestrator
                (``_chain.py``) that calls them in the DAG's order over OIP REST
    Pipeline    the pipeline's workers (``streamdag run --steps``, one process per step and
                one for the output join, via the demo's ``Workers``) and the gateway
                (``streamdag serve`` with ``--bootstrap``)

Both answer ``POST .../v2/pipelines/<name>/infer`` with the same body, and both can crash
and restart the process that runs the faulty model.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
from _chain import Chain
from _medrec_specs import FAULTY_MODEL, FAULTY_STEP, BenchSpecs
from _serving import Child, Children, wait_ready

from streamdag.broker import free_port
from streamdag.demo.processes import Worker, Workers
from streamdag.kafka import KafkaConnection
from streamdag.pipeline import compile_plan, load_spec

__all__ = ["Pipeline", "RestChain"]

HERE = Path(__file__).resolve().parent


class RestChain:
    name = "REST chain"

    def __init__(self, children: Children, specs: BenchSpecs, *, call_timeout_s: float) -> None:
        self.children = children
        self.specs = specs
        self.call_timeout_s = call_timeout_s
        self.ports = {m: free_port() for m in specs.models}
        self.servers: dict[str, Child] = {}
        self.port = free_port()
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/pipelines/{self.specs.pipeline_name}/infer"

    def model_url(self, model: str) -> str:
        return f"http://127.0.0.1:{self.ports[model]}/v2/models/{model}"

    def _server(self, model: str, name: str) -> Child:
        args = [str(self.specs.models[model]), str(self.ports[model]), str(free_port())]
        return self.children.start(name, args, script=HERE / "_model_server.py")

    def launch(self) -> None:
        """Start the model servers; ``ready`` waits for them."""
        for model in self.specs.models:
            self.servers[model] = self._server(model, f"model-{model}")

    def ready(self) -> None:
        """Wait for the model servers, then start the orchestrator and wait for it."""
        for model, child in self.servers.items():
            wait_ready(child, self.model_url(model) + "/ready")
        args = [str(self.port), self.specs.pipeline_name]
        args += [f"{m}=127.0.0.1:{p}" for m, p in self.ports.items()]
        args += ["--timeout-s", str(self.call_timeout_s), "--retries", "2"]
        orchestrator = self.children.start("orchestrator", args, script=HERE / "_chain.py")
        wait_ready(orchestrator, f"http://127.0.0.1:{self.port}/v2/health/ready")

    async def faulty_call_s(self, text: str, calls: int = 30) -> float:
        """The median seconds of one call of the faulty model for ``text``, unloaded."""
        chain = Chain({m: f"127.0.0.1:{p}" for m, p in self.ports.items()}, 10.0, retries=0)
        try:
            inputs = await chain.coder_inputs(np.array([text.encode()], dtype=object))
            times = []
            for _ in range(calls):
                started = time.perf_counter()
                await chain.call(FAULTY_MODEL, inputs)
                times.append(time.perf_counter() - started)
        finally:
            await chain.aclose()
        return statistics.median(times)

    def kill(self) -> None:
        os.kill(self.servers[FAULTY_MODEL].pid, signal.SIGKILL)
        self.servers[FAULTY_MODEL].proc.wait(10)

    def restart(self) -> None:
        self.restarts += 1
        self.servers[FAULTY_MODEL] = self._server(
            FAULTY_MODEL, f"model-{FAULTY_MODEL}-{self.restarts}"
        )

    def stop(self) -> None:
        """SIGTERM to every server at once, then wait for each (the caller's ``Children``
        would stop them one after the other)."""
        mine = [c for c in self.children.children() if c.name.startswith(("model-", "orchestr"))]
        for child in mine:
            if child.alive():
                child.proc.send_signal(signal.SIGTERM)
        for child in mine:
            self.children.stop(child)


class Pipeline:
    name = "streamdag pipeline"

    def __init__(
        self, children: Children, specs: BenchSpecs, bootstrap: str, log_dir: Path
    ) -> None:
        self.children = children
        self.specs = specs
        self.bootstrap = bootstrap
        self.port = free_port()
        spec = load_spec(specs.pipeline)
        groups = [[node] for node in compile_plan(spec).nodes]  # each step, the assembler
        cluster = KafkaConnection(bootstrap_servers=bootstrap)
        self.workers = Workers(specs.pipeline, cluster, groups, log_dir)
        self.gateway: Child | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/pipelines/{self.specs.pipeline_name}/infer"

    def launch(self) -> None:
        """Start the workers and the gateway; ``ready`` waits for the gateway."""
        self.workers.start()
        args = ["serve", str(self.specs.pipeline), "--bootstrap", self.bootstrap]
        args += ["--http-port", str(self.port), "--grpc-port", str(free_port())]
        self.gateway = self.children.start("gateway", args)

    def ready(self) -> None:
        assert self.gateway is not None
        wait_ready(self.gateway, f"http://127.0.0.1:{self.port}/v2/health/ready")
        self.workers.check()

    def _faulty(self) -> Worker:
        return next(w for w in self.workers.workers if w.steps == [FAULTY_STEP])

    def kill(self) -> None:
        worker = self._faulty()
        worker.process.kill()
        worker.process.wait(10)

    def restart(self) -> None:
        self.restarts += 1
        old = self._faulty()
        log = old.log.with_name(f"{old.log.stem}-{self.restarts}.log")
        with log.open("wb") as out:
            process = subprocess.Popen(
                self.workers.command(old.steps),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.workers.workers[self.workers.workers.index(old)] = Worker(old.steps, log, process)

    def stop(self) -> None:
        """The gateway, then the workers (SIGTERM: finish the batch, commit, leave)."""
        try:
            if self.gateway is not None:
                self.children.stop(self.gateway)
                self.gateway = None
        finally:
            self.workers.stop()
