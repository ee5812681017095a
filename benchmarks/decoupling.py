"""What decoupling buys: the medical-records models as a REST chain and as a streamdag
pipeline, under the same open-loop load, with and without a fault in one mid-DAG model.

1. The example's models are trained unless present (as ``make demo`` does), and specs are
   written from its pipeline.yaml (``_medrec_specs.py``): its ``icd10`` model (the
   ``coder`` step) becomes ``_medrec_faults.code_icd10``, which can raise or slow down.
2. The REST chain starts (one model server per model, an orchestrator: ``_chain.py``),
   then a broker (unless ``--bootstrap``) and the pipeline (a worker per step, the
   gateway). Each answers a warm-up; each's capacity is measured (16 callers, closed
   loop) unless ``--rate`` is given; the load is 60% of the smaller capacity.
3. Scenario by scenario, each architecture runs it in turn while the other idles (both
   then meet much the same background load on a shared machine): the same notes at the
   same rate for the same time, each request with a deadline.
       steady   no fault
       poison   icd10 raises on a fixed 1% of the notes
       slow     icd10 takes 5x its time per note for ``slow_for`` seconds from 1/3 of the run
       crash    at 1/3 of the run the process running icd10 is SIGKILLed; it is started
                again ``restart_after`` seconds later
4. Per architecture and scenario: the counts, latencies, throughput and time to recover
   (``_decoupling_report.py``); a table on stdout, ``--json``, and one timeline per
   scenario in ``--plot-dir``.

    .venv/bin/python benchmarks/decoupling.py [--quick] [--rate R] [--duration-s S]
        [--scenarios steady,poison,slow,crash] [--bootstrap HOST:PORT] [--json PATH]
        [--plot-dir DIR | --no-plot] [--per-request] [--example DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shlex
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

from _broker import kafka_bootstrap
from _decoupling_report import plot, table
from _machine import machine
from _scenarios import Config, Runner
from _serving import Children

from streamdag.demo.example import EXAMPLE_DIR, MedicalRecords

HERE = Path(__file__).resolve().parent
SCENARIOS = ("steady", "poison", "slow", "crash")
FULL = {"duration_s": 60.0, "deadline_s": 60.0, "restart_after_s": 10.0, "slow_for_s": 10.0}
QUICK = {"duration_s": 6.0, "deadline_s": 20.0, "restart_after_s": 3.0, "slow_for_s": 2.0}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short runs, shorter faults")
    p.add_argument("--rate", type=float, help="requests/s (default: 60%% of measured capacity)")
    p.add_argument("--duration-s", type=float, help="seconds of sending per scenario")
    p.add_argument("--deadline-s", type=float, help="a request unanswered by then is lost")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--bootstrap", help="a running Kafka (default: a local broker for the run)")
    p.add_argument("--json", type=Path, help="write the results to this file")
    p.add_argument(
        "--plot-dir", type=Path, help="timelines here (default without --quick: docs/img)"
    )
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--per-request", action="store_true", help="each request's id, status and latency in --json"
    )
    p.add_argument("--example", type=Path, default=EXAMPLE_DIR, help="the medical_records folder")
    args = p.parse_args(argv)
    for s in args.scenarios.split(","):
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}")
    return args


def config(args: argparse.Namespace) -> Config:
    base = QUICK if args.quick else FULL
    return Config(
        duration_s=args.duration_s or base["duration_s"],
        deadline_s=args.deadline_s or base["deadline_s"],
        restart_after_s=base["restart_after_s"],
        slow_for_s=base["slow_for_s"],
        window_s=1.0 if args.quick else 2.0,
        capacity_s=2.0 if args.quick else 15.0,
        warm_s=3.0 if args.quick else 30.0,
        settle_s=1.0 if args.quick else 10.0,
        scenarios=tuple(s for s in SCENARIOS if s in args.scenarios.split(",")),
    )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through every finally: each process started is stopped.
    sys.exit(128 + signum)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse(argv)
    cfg = config(args)
    example = MedicalRecords(args.example)
    models = example.ensure_models()
    print(f"models: {'trained' if models.trained else 'up to date'} in {example.models_dir}")
    run_id = uuid.uuid4().hex[:8]
    started = time.time()
    with (
        tempfile.TemporaryDirectory(prefix="streamdag-decoupling-") as tmp,
        Children(Path(tmp)) as children,
    ):
        runner = Runner(example, Path(tmp), run_id, cfg, children)
        runner.per_request = args.per_request
        results = asyncio.run(runner.run(lambda: kafka_bootstrap(args.bootstrap), args.rate))
    rows = results["rows"]
    report: dict[str, Any] = {
        "benchmark": "decoupling",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", "benchmarks/decoupling.py", *argv]),
        "seconds": round(time.time() - started, 1),
        "machine": machine(),
        "config": cfg.as_dict(),
        **{k: v for k, v in results.items() if k != "timelines"},
    }
    print()
    for line in table(rows):
        print(line)
    print(f"\nload {results['rate']} requests/s; capacity {results['capacity']}")
    print(f"{report['seconds']} s in all")
    plot_dir = args.plot_dir or (None if args.quick else HERE.parent / "docs" / "img")
    if plot_dir is not None and not args.no_plot:
        for scenario, runs in results["timelines"].items():
            path = plot_dir / f"decoupling-{scenario}.png"
            plot(scenario, runs, path)
            print(f"wrote {path}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
