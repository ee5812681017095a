"""The decoupling benchmark's run: both architectures up, warm-up, capacity, then each
scenario on the pipeline and then on the chain (the other idle), the pipeline and its
broker stopped at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _architectures import Pipeline, RestChain
from _chain import BACKOFF_S
from _decoupling_report import summarize
from _medrec_faults import note_key
from _medrec_specs import FAULTY_MODEL, BenchSpecs, write_specs
from _openloop import Outcome, capacity, open_loop
from _serving import Children

from streamdag.demo.example import MedicalRecords

__all__ = ["Config", "Runner"]

LOAD_SHARE = 0.6  # of the smaller capacity
SLOW_FACTOR = 5
CAPACITY_CALLERS = 16
WARM_UP_S = 180.0  # for the first answer
WARM_RATE = 3.0
CALL_TIMEOUT_S = 5.0  # the chain's timeout per model call (2 retries follow)


@dataclass(frozen=True)
class Config:
    duration_s: float
    deadline_s: float
    restart_after_s: float
    slow_for_s: float
    window_s: float
    capacity_s: float
    warm_s: float  # notes at WARM_RATE before measuring
    settle_s: float  # idle between measurements, so that one's after-effects pass
    scenarios: tuple[str, ...]

    @property
    def fault_at_s(self) -> float:
        return self.duration_s / 3

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fault_at_s": self.fault_at_s}


Arch = RestChain | Pipeline


class Runner:
    def __init__(
        self, example: MedicalRecords, work: Path, run_id: str, cfg: Config, children: Children
    ) -> None:
        self.example = example
        self.cfg = cfg
        self.run_id = run_id
        self.children = children
        self.work = work
        self.specs: BenchSpecs = write_specs(
            example.root, work / "specs", run_id, deadline_s=cfg.deadline_s
        )
        # Children inherit it: the engine and the model servers import medrec from there.
        os.environ["PYTHONPATH"] = self.specs.env["PYTHONPATH"]
        self._keys: dict[str, str] = {}
        self.t0 = time.monotonic()
        self.per_request = False
        # Per architecture: the steady run's result per document, and its p50 (s).
        self.steady: dict[
            str, tuple[dict[int, Any] | None, float | None]
        ] = {}  # add each request's id, status and latency to its row

    def say(self, line: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f} s] {line}", flush=True)

    def key(self, text: str) -> str:
        if text not in self._keys:
            from medrec.text import clauses  # importable once MedicalRecords loaded medrec

            self._keys[text] = note_key([c.encode() for c in clauses(text)])
        return self._keys[text]

    async def run(
        self, broker: Callable[[], AbstractContextManager[str]], rate: float | None
    ) -> dict[str, Any]:
        chain = RestChain(self.children, self.specs, call_timeout_s=CALL_TIMEOUT_S)
        # Everything starts at once (the chain's servers boot while the broker does); the
        # measurements wait until all of it answers.
        self.say("starting the REST chain and a broker ...")
        try:
            chain.launch()
            return await self._run(chain, broker, rate)
        finally:
            chain.stop()

    async def _run(
        self,
        chain: RestChain,
        broker: Callable[[], AbstractContextManager[str]],
        rate: float | None,
    ) -> dict[str, Any]:
        caps: dict[str, float] = {}
        rows: list[dict[str, Any]] = []
        timelines: dict[str, dict[str, Any]] = {s: {} for s in self.cfg.scenarios}
        with contextlib.ExitStack() as stack:
            bootstrap = stack.enter_context(broker())
            pipeline = Pipeline(self.children, self.specs, bootstrap, self.work / "workers")
            stack.callback(pipeline.stop)
            self.say("starting the pipeline ...")
            pipeline.launch()
            chain.ready()
            await self.warm_up(chain)
            slow_ms = await self.calibrate(chain)
            pipeline.ready()
            await self.warm_up(pipeline)
            if rate is None:
                for arch in (chain, pipeline):
                    caps[arch.name] = await self.capacity(arch)
                    await asyncio.sleep(self.cfg.settle_s)
                rate = round(LOAD_SHARE * min(caps.values()), 1)
            docs = self.example.documents(math.ceil(rate * self.cfg.duration_s))
            texts = [d.text for d in docs]
            # Scenario by scenario, each architecture in turn (the other idle), so that both
            # meet much the same background load on a shared machine.
            for scenario in self.cfg.scenarios:
                for arch in (pipeline, chain):
                    rows.append(
                        await self.scenario(arch, scenario, texts, rate, slow_ms, timelines)
                    )
        return {
            "rate": rate,
            "capacity": caps,
            "slow_ms_per_note": slow_ms,
            "faulty_model": FAULTY_MODEL,
            "chain": {"call_timeout_s": CALL_TIMEOUT_S, "retries": 2, "backoff_s": BACKOFF_S},
            "rows": rows,
            "agreement": agreement(timelines.get("steady", {})),
            "timelines": timelines,
        }

    async def warm_up(self, arch: Arch) -> None:
        """Until a note comes back (consumer groups join, models load), then a few more."""
        text = self.example.documents(1)[0].text
        deadline = time.monotonic() + WARM_UP_S
        attempt = 0
        while True:
            attempt += 1
            outcomes, _ = await open_loop(
                arch.url, [(f"warm-{self.run_id}-{attempt}", text)], rate=1, deadline_s=30
            )
            if outcomes[0].status == "result":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{arch.name} does not answer: {outcomes[0].error}")
            await asyncio.sleep(1)
        # Then notes at a modest rate for a while: the first seconds of a fresh broker and
        # of fresh consumers and transactional producers are slower than what follows.
        n = math.ceil(WARM_RATE * self.cfg.warm_s)
        docs = [(f"warm-{self.run_id}-{i}", t) for i, t in enumerate(self.texts(n, 11))]
        outcomes, _ = await open_loop(arch.url, docs, rate=WARM_RATE, deadline_s=60)
        late = [o.latency_s for o in outcomes[n // 2 :] if o.latency_s is not None]
        p50 = statistics.median(late) * 1000 if late else math.nan
        self.say(f"{arch.name}: answering (p50 {p50:.0f} ms at the end of the warm-up)")

    def texts(self, n: int, seed: int) -> list[str]:
        return [d.text for d in self.example.documents(n, seed=seed)]

    async def capacity(self, arch: Arch) -> float:
        docs = [(f"cap-{self.run_id}-{i}", t) for i, t in enumerate(self.texts(3000, 13))]
        rps = await capacity(
            arch.url, docs, concurrency=CAPACITY_CALLERS, seconds=self.cfg.capacity_s
        )
        self.say(f"{arch.name}: capacity {rps:.1f} notes/s")
        return round(rps, 1)

    async def calibrate(self, chain: RestChain) -> float:
        """The extra milliseconds per note that make icd10 SLOW_FACTOR times slower: its
        median time per call, unloaded, as the chain sees it."""
        call_s = await chain.faulty_call_s(self.texts(1, 17)[0])
        return round((SLOW_FACTOR - 1) * call_s * 1000, 2)

    def set_faults(self, **faults: Any) -> None:
        self.specs.control.write_text(json.dumps(faults))

    def runs(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for log in self.specs.runs_logs():
            counts.update(log.read_text().split())
        return counts

    async def scenario(
        self,
        arch: Arch,
        scenario: str,
        texts: list[str],
        rate: float,
        slow_ms: float,
        timelines: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        cfg = self.cfg
        await asyncio.sleep(cfg.settle_s)
        self.say(f"{arch.name}: {scenario} ({len(texts)} notes at {rate}/s) ...")
        self.set_faults()
        for log in self.specs.runs_logs():
            log.unlink()
        events: list[tuple[float, str]] = []
        actions: list[tuple[float, Any]] = []
        at = cfg.fault_at_s
        recover_from: float | None = None
        if scenario == "poison":
            self.set_faults(poison=True)
        elif scenario == "slow":
            until = at + cfg.slow_for_s
            events += [(at, "slow from"), (until, "slow until")]
            recover_from = until

            async def slow() -> None:
                now = time.time()
                self.set_faults(slow_ms=slow_ms, slow_from=now, slow_until=now + cfg.slow_for_s)

            actions.append((at, slow))
        elif scenario == "crash":
            back = at + cfg.restart_after_s
            events += [(at, "SIGKILL"), (back, "restart")]
            recover_from = back

            async def kill() -> None:
                await asyncio.to_thread(arch.kill)

            async def restart() -> None:
                await asyncio.to_thread(arch.restart)

            actions += [(at, kill), (back, restart)]
        docs = [(f"{scenario}-{self.run_id}-{arch.name[:4]}-{i}", t) for i, t in enumerate(texts)]
        outcomes, _ = await open_loop(
            arch.url, docs, rate=rate, deadline_s=cfg.deadline_s, events=actions
        )
        self.set_faults()
        steady, steady_p50 = self.steady.get(arch.name, (None, None))
        row = summarize(
            outcomes,
            seconds=_span(outcomes),
            steady=steady,
            steady_p50_s=steady_p50,
            recover_from_s=recover_from,
            window_s=cfg.window_s,
            runs=self.runs(),
            keys=[self.key(t) for t in texts],
        )
        # The machine is shared: the 1-minute load average says how busy it was meanwhile.
        row["load_avg"] = round(os.getloadavg()[0], 1)
        self.say("  " + ", ".join(f"{k}={v}" for k, v in row.items() if k != "error_samples"))
        if scenario == "steady":
            ok = [o.latency_s for o in outcomes if o.status == "result" and o.latency_s]
            self.steady[arch.name] = (
                {o.doc: o.result for o in outcomes if o.result is not None},
                statistics.median(ok) if ok else None,
            )
        if self.per_request:
            row["requests"] = [
                [o.rid, o.status, None if o.latency_s is None else round(o.latency_s * 1000, 1)]
                for o in outcomes
            ]
        timelines[scenario][arch.name] = {
            "outcomes": outcomes,
            "events": events,
            "deadline_s": cfg.deadline_s,
        }
        return {"architecture": arch.name, "scenario": scenario, **row}


def _span(outcomes: list[Outcome]) -> float:
    """From the first send to the last answer."""
    ends = [o.sent_s + o.latency_s for o in outcomes if o.latency_s is not None]
    return max(ends, default=0.0)


def agreement(steady: dict[str, Any]) -> dict[str, int] | None:
    """How many notes the two architectures answered alike (route, codes, risk) at steady."""
    if len(steady) != 2:
        return None
    a, b = ({o.doc: o.result for o in run["outcomes"] if o.result} for run in steady.values())
    fields = ("route", "codes", "risk_score")
    both = set(a) & set(b)
    same = sum(all(a[d].get(f) == b[d].get(f) for f in fields) for d in both)
    return {"compared": len(both), "same": same}
