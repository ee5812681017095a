"""What the serving benchmark runs against: spec files, and `streamdag serve` / `streamdag
run` as child processes (their own interpreters, so they share no GIL with the clients)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from _drain import BenchmarkFailed
from confluent_kafka.admin import AdminClient

from streamdag.kafka import admin_config, ensure_topics, list_topics
from streamdag.pipeline import PipelineSpec, derive_topics, load_spec

__all__ = [
    "TCP_NODELAY_PATCH",
    "Child",
    "Children",
    "Specs",
    "create_pipeline_topics",
    "delete_pipeline_topics",
    "wait_ready",
    "write_specs",
]

HERE = Path(__file__).resolve().parent
STEPS = ("s1", "s2", "s3")
SERVED_MODEL = "double"  # the model every transport calls: y = 2 * x on FP32
STEP_MODEL = "step-double"  # the same function as a pipeline step (batch as configured)

log = logging.getLogger("benchmarks.serving")


@dataclass(frozen=True)
class Specs:
    """The spec files of one run: the served model and one pipeline per guarantee."""

    folder: Path
    model: PipelineSpec  # declares SERVED_MODEL; its own one-step pipeline never runs
    pipelines: dict[str, PipelineSpec]  # guarantee -> 3-step linear pipeline

    def files(self) -> list[Path]:
        return [Path(s.source or "") for s in (self.model, *self.pipelines.values())]


def write_specs(folder: Path, run_id: str, *, step_max_wait_ms: float | None) -> Specs:
    """Write the specs (and the handler module they name) to ``folder`` and load them.

    The served model has ``max_wait_ms: 0``: no request waits for others to join its
    batch, so the transports are compared without a batching delay. The pipeline steps
    keep the project's default batch unless ``step_max_wait_ms`` is given.
    """
    shutil.copy(HERE / "_handlers.py", folder / "_handlers.py")
    model = {
        "name": f"bench-model-{run_id}",
        "guarantee": "at_least_once",
        "partitions": 1,
        "models": {
            SERVED_MODEL: {
                "runtime": "python",
                "handler": "_handlers:double",
                "batch": {"max_size": 64, "max_wait_ms": 0},
            }
        },
        "steps": [{"name": "s", "model": SERVED_MODEL}],
    }
    step_model: dict[str, Any] = {"runtime": "python", "handler": "_handlers:double"}
    if step_max_wait_ms is not None:
        step_model["batch"] = {"max_size": 64, "max_wait_ms": step_max_wait_ms}
    pipelines: dict[str, PipelineSpec] = {}
    for guarantee, short in (("at_least_once", "alo"), ("exactly_once", "eos")):
        steps: list[dict[str, Any]] = [{"name": STEPS[0], "model": STEP_MODEL}]
        for before, step in itertools.pairwise(STEPS):
            # _handlers.double reads x and writes y: feed each step's y to the next as x.
            ref = f"{before}.outputs"
            steps.append(
                {
                    "name": step,
                    "model": STEP_MODEL,
                    "inputs": [ref],
                    "tensor_map": {f"{ref}.y": "x"},
                }
            )
        spec = {
            "name": f"bench-rr-{short}-{run_id}",
            "guarantee": guarantee,
            "models": {STEP_MODEL: step_model},
            "steps": steps,
        }
        pipelines[guarantee] = _write(folder / f"{short}.yaml", spec)
    return Specs(folder, _write(folder / "model.yaml", model), pipelines)


def _write(path: Path, spec: dict[str, Any]) -> PipelineSpec:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_spec(path)


# For comparison only (--patch-tcp-nodelay), in the server process's memory: asyncio sets
# TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and serving/server.py binds the
# REST socket with proto 0, so responses written in two parts (headers, then body) meet
# Nagle's algorithm and the client's delayed ACK (40 ms on Linux).
TCP_NODELAY_PATCH = """
import asyncio.base_events, socket
def _set_nodelay(sock):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
asyncio.base_events._set_nodelay = _set_nodelay
"""


class Child:
    """A `streamdag` command in a child process of its own session (Ctrl-C reaches only
    the benchmark, which stops its children in order); output goes to ``log_file``.
    ``prelude`` is Python code run in the child before the command; ``argv`` runs another
    program instead (a peer's server), in ``cwd``; ``script`` runs that Python file with
    ``args`` instead of the `streamdag` command."""

    def __init__(
        self,
        name: str,
        args: list[str],
        log_file: Path,
        prelude: str = "",
        argv: list[str] | None = None,
        cwd: Path | None = None,
        script: Path | None = None,
    ) -> None:
        self.name = name
        self.log_file = log_file
        if script is not None:
            argv = [sys.executable, str(script), *args]
        elif argv is None and prelude:
            code = f"{prelude}\nfrom streamdag.cli.main import run\nrun()\n"
            argv = [sys.executable, "-c", code, *args]
        elif argv is None:
            argv = [sys.executable, "-m", "streamdag.cli.main", *args]
        with log_file.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=cwd,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (finish what is in flight, commit, leave the group), then SIGKILL."""
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning(
                "%s (pid %d) ignored SIGTERM for %gs: killing it", self.name, self.pid, timeout
            )
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


class Children:
    """The child processes of a run; leaving the ``with`` stops them all, newest first,
    whatever happened (an exception, or SIGTERM turned into SystemExit)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._children: list[Child] = []

    def start(
        self,
        name: str,
        args: list[str],
        prelude: str = "",
        argv: list[str] | None = None,
        cwd: Path | None = None,
        script: Path | None = None,
    ) -> Child:
        child = Child(
            name, args, self.folder / f"{name}.log", prelude, argv=argv, cwd=cwd, script=script
        )
        self._children.append(child)
        return child

    def children(self) -> list[Child]:
        return list(self._children)

    def stop(self, child: Child) -> None:
        child.stop()
        self._children.remove(child)

    def __enter__(self) -> Children:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        failed = exc_type is not None and exc_type is not SystemExit
        for child in reversed(self._children):
            if failed:
                print(f"--- last lines of {child.name} (pid {child.pid}):", file=sys.stderr)
                print(child.log_tail(), file=sys.stderr)
            try:
                child.stop()
            except Exception as error:  # keep stopping the others
                log.error("could not stop %s (pid %d): %s", child.name, child.pid, error)
        self._children.clear()


def wait_ready(child: Child, url: str, timeout: float = 90.0) -> float:
    """Poll ``url`` (an OIP readiness endpoint) until it answers 200; the seconds it took."""
    started = time.perf_counter()
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() - started < timeout:
            if not child.alive():
                raise BenchmarkFailed(f"{child.name} exited:\n{child.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return time.perf_counter() - started
            time.sleep(0.2)
    raise BenchmarkFailed(f"{child.name} not ready after {timeout:g}s:\n{child.log_tail()}")


def create_pipeline_topics(bootstrap: str, specs: Specs, timeout: float = 30.0) -> None:
    """Create the topics of ``specs`` and wait until the cluster lists them all.

    Done before the server starts: when its gateway creates the topics of several
    pipelines itself and subscribes at once, the newest topic can be missing from the
    group's first assignment, and the gateway then gives up after 30 s.
    """
    topics = [t for s in (specs.model, *specs.pipelines.values()) for t in derive_topics(s)]
    ensure_topics(bootstrap, topics)
    deadline = time.monotonic() + timeout
    while {t.name for t in topics} - set(list_topics(bootstrap)):
        if time.monotonic() > deadline:
            raise BenchmarkFailed("the benchmark topics did not appear in the metadata")
        time.sleep(0.2)


def delete_pipeline_topics(bootstrap: str, specs: Specs) -> None:
    """Delete the topics of ``specs`` (on a cluster the benchmark did not start)."""
    wanted = {t.name for s in (specs.model, *specs.pipelines.values()) for t in derive_topics(s)}
    names = sorted(wanted & set(list_topics(bootstrap)))
    if not names:
        return
    admin = AdminClient(admin_config(bootstrap))  # must outlive the futures
    for future in admin.delete_topics(names, request_timeout=30).values():
        try:
            future.result(30)
        except Exception as exc:
            log.warning("could not delete a benchmark topic: %s", exc)
