"""Run the workers of a pipeline (all steps, or some) in this process until told to stop:
one per step, or per fused stage (the spec's ``stages:``, or the chosen steps all fused)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from streamdag.engine.stage import stage_plan
from streamdag.engine.worker import StepWorker
from streamdag.errors import ConfigError, StreamdagError
from streamdag.kafka import KafkaConnection, ensure_topics
from streamdag.kafka.admin import active_groups
from streamdag.payloads import PayloadStore, start_sweeper
from streamdag.pipeline import NodeKind, PipelinePlan, consumer_group
from streamdag.pipeline.plan import STAGE_JOINER
from streamdag.runtimes import Model, create_model

__all__ = ["PipelineRunner", "handle_signals"]

log = logging.getLogger("streamdag.engine.runner")


class PipelineRunner:
    """Creates the pipeline's topics, loads each model once, and runs one worker thread per
    step, or per fused stage: those of the plan, or with ``fuse`` the chosen steps (every
    node by default) as one stage. ``stop`` ends them after their batch in flight; ``run``
    returns when all ended and raises if a worker died of an unexpected error."""

    def __init__(
        self,
        plan: PipelinePlan,
        kafka: KafkaConnection | str,
        *,
        steps: Sequence[str] | None = None,
        instance_id: str | None = None,
        payloads: PayloadStore | None = None,
        fuse: bool = False,
    ) -> None:
        known = list(plan.nodes)
        chosen = list(steps) if steps else known
        unknown = [s for s in chosen if s not in known]
        if unknown:
            raise ConfigError(
                f"unknown step {', '.join(unknown)} in --steps; {plan.name} has {', '.join(known)}"
            )
        self.plan = plan
        self.kafka = KafkaConnection.of(kafka)
        self.steps = chosen
        self.instance_id = instance_id
        self.payloads = payloads
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self._failures: list[BaseException] = []
        if fuse:
            plan = plan.fused(chosen)
        self._plans = [
            stage_plan(plan, unit, max_record_bytes=self.kafka.max_record_bytes)
            for unit in plan.units(chosen)
        ]

    def stop(self) -> None:
        self.stop_event.set()

    def _load_models(self) -> dict[str, Model]:
        models: dict[str, Model] = {}
        spec = self.plan.spec
        for step in (s for stage in self._plans for s in stage.steps):
            if step.kind is NodeKind.ASSEMBLER or step.model in models:
                continue
            model = create_model(step.model, spec.models[step.model], spec.base_dir)
            model.load()
            models[step.model] = model
        return models

    def run(self) -> None:
        # Each worker's Kafka thread hands the GIL to its model thread at every client call
        # and waits for it back; at the default 5 ms switch interval that wait, several
        # times per batch, caps a step's throughput. 0.5 ms keeps the Kafka side moving.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        ensure_topics(self.kafka, self.plan.topics())
        self._check_alone()
        models = self._load_models()
        threads = [
            threading.Thread(
                target=self._work,
                args=(
                    StepWorker(
                        plan,
                        models,
                        self.kafka,
                        self.stop_event,
                        instance_id=self.instance_id,
                        payloads=self.payloads,
                    ),
                ),
                name=f"step-{plan.name}",
                daemon=True,
            )
            for plan in self._plans
        ]
        for t in threads:
            t.start()
        if self.payloads is not None:
            start_sweeper(self.payloads, self.kafka, self.stop_event)
        self.ready.set()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        finally:
            self.stop_event.set()
            for t in threads:
                t.join()
            for name, model in models.items():
                try:
                    model.unload()
                except Exception:
                    log.exception("unloading model %s failed", name)
        if self._failures:
            failure = self._failures[0]
            if isinstance(failure, StreamdagError):
                raise failure
            raise StreamdagError(f"a worker failed: {type(failure).__name__}: {failure}")

    def _check_alone(self) -> None:
        """Refuse to run a step that another group runs now: a step fused here and run on
        its own elsewhere, or the other way round, or in another stage. Each group reads
        the step's records from its own offsets, so the step's results would be written
        twice. Checked once at start: two workers started within the same moment can
        still both pass (docs/architecture.md, "Fused stages")."""
        prefix = consumer_group(self.plan.name, "")
        mine = {stage.group_id for stage in self._plans}
        for group in active_groups(self.kafka, prefix):
            if group in mine:
                continue  # other members of our own groups: they share the partitions
            nodes = set(group.removeprefix(prefix).split(STAGE_JOINER))
            for stage in self._plans:
                shared = sorted(nodes & {s.step for s in stage.steps})
                if shared:
                    raise ConfigError(
                        f"step {', '.join(shared)} of {self.plan.name} runs in consumer "
                        f"group {group} now; stop those workers before running it in "
                        f"{stage.group_id} (a killed worker stays a member for its "
                        "session timeout, 6 s)"
                    )

    def _work(self, worker: StepWorker) -> None:
        try:
            worker.run()
        except BaseException as exc:
            if isinstance(exc, StreamdagError):  # says what happened; no traceback needed
                log.error("worker of step %s failed: %s", worker.plan.name, exc)
            else:
                log.exception("worker of step %s failed", worker.plan.name)
            self._failures.append(exc)
            self.stop_event.set()  # one dead worker stops the process: let a supervisor see it


@contextmanager
def handle_signals(runner: PipelineRunner) -> Iterator[None]:
    """SIGTERM and SIGINT stop the runner gracefully (batch in flight finished, committed)."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: finishing the batches in flight, then stopping", signum)
        runner.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
