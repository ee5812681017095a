"""pip install is the whole install: the wheel, in a fresh virtual environment outside the
repository, run from an empty folder by a user with an empty home, starts a broker (its
jars fetched by itself), creates the quickstart's topics, runs and serves it and answers
over REST and gRPC; with the demo extra, ``streamdag demo`` runs too.

Kafka's jars come from a file:// Maven repository made of the jars this checkout fetched
(each with its .sha1, as Maven Central publishes it), so the test needs no network for
them. Python packages come from pip's index once, into the checkout's ``.wheelhouse``
(ignored by git), and from there afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamdag.broker import free_port, jars
from streamdag.settings import get_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".wheelhouse"
PIP = ["-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check"]
OFFLINE = ["--no-index", "--find-links", str(WHEELHOUSE)]


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result  # type: ignore[no-any-return]


def _pip_env() -> dict[str, str]:
    """The environment for pip, without this test process's virtual environment."""
    return {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}


@dataclass(frozen=True)
class Install:
    wheel: Path
    python: Path
    env: dict[str, str]  # a new user's: an empty home, no STREAMDAG_ setting but the mirror
    home: Path

    def streamdag(
        self, *args: str, cwd: Path, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python.parent / "streamdag"), *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=self.env,
            timeout=timeout,
            check=False,
        )


def _maven_mirror(root: Path) -> Path:
    """A Maven repository of the checkout's jars, each beside its .sha1."""
    libs = get_settings().kafka_libs
    for artifact in jars.ARTIFACTS:
        source = libs / artifact.file_name
        jar = root / artifact.url("x").removeprefix("x/")
        jar.parent.mkdir(parents=True, exist_ok=True)
        jar.symlink_to(source)
        digest = hashlib.sha1(source.read_bytes()).hexdigest()
        jar.with_name(jar.name + ".sha1").write_text(digest)
    return root


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    # Built from a copy of the sources, so the checkout gets no build/ folder.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src",
        source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "models"),
    )
    dist = tmp_path_factory.mktemp("dist")
    build = ["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)]
    _run([sys.executable, "-m", "pip", *build], env=_pip_env())
    (wheel,) = dist.glob("streamdag-*.whl")
    # Every dependency, the demo extra's too; files already there are not fetched again.
    _run(
        [sys.executable, "-m", "pip", "download", "-q", "-d", str(WHEELHOUSE), f"{wheel}[demo]"],
        env=_pip_env(),
    )
    for stale in WHEELHOUSE.glob("streamdag-*.whl"):
        stale.unlink()
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    _run([str(python), *PIP, *OFFLINE, str(wheel)], env=_pip_env())

    home = tmp_path_factory.mktemp("home")
    mirror = _maven_mirror(tmp_path_factory.mktemp("maven"))
    env = {
        k: v
        for k, v in _pip_env().items()
        if not k.startswith(("STREAMDAG_", "XDG_")) and k != "JAVA_TOOL_OPTIONS"
    }
    env |= {"HOME": str(home), "STREAMDAG_KAFKA_REPOSITORY": mirror.as_uri()}
    return Install(wheel, python, env, home)


@contextlib.contextmanager
def _service(install: Install, args: list[str], cwd: Path, log: Path) -> Iterator[int]:
    """A ``streamdag`` service in the background; SIGTERM by its pid at the end."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(install.python.parent / "streamdag"), *args],
            cwd=cwd,
            env=install.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _infer(install: Install, cwd: Path, *door: str) -> dict[str, object]:
    """The quickstart's answer through ``door``, retried while the pipeline comes up."""
    data = json.dumps({"text": ["Patient reports severe chest pain."]})
    deadline = time.monotonic() + 120
    while True:
        result = install.streamdag("infer", "quickstart", *door, "--data", data, cwd=cwd)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def test_a_wheel_in_a_fresh_environment_runs_the_quickstart_and_the_demo(
    install: Install, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    port = free_port()
    started = install.streamdag("broker", "start", "--port", str(port), cwd=empty, timeout=180)
    assert started.returncode == 0, started.stderr
    try:
        assert started.stdout.strip() == f"127.0.0.1:{port}"
        assert "fetching Apache Kafka" in started.stderr
        cache = install.home / ".cache" / "streamdag" / "kafka" / jars.KAFKA_VERSION
        assert jars.missing(cache) == []
        assert list(empty.iterdir()) == []  # nothing lands in the working folder
        # Any folder finds the per-user broker.
        status = install.streamdag("broker", "status", cwd=install.home)
        assert status.stdout.startswith(f"running at 127.0.0.1:{port}"), status.stdout
        state = install.home / ".local" / "state" / "streamdag" / "broker"
        assert str(state) in status.stdout

        _quickstart(install, empty, f"127.0.0.1:{port}")
    finally:
        stopped = install.streamdag("broker", "stop", cwd=install.home, timeout=60)
        assert stopped.returncode == 0, stopped.stderr

    # The demo trains its models: without the extra the error says what to install.
    lacking = install.streamdag("demo", "--docs", "1", cwd=empty)
    assert lacking.returncode == 1
    assert "pip install 'streamdag[demo]'" in lacking.stderr, lacking.stderr
    _run([str(install.python), *PIP, *OFFLINE, f"{install.wheel}[demo]"], env=_pip_env())
    demo = install.streamdag("demo", "--docs", "20", cwd=empty, timeout=420)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "20/20 documents answered" in demo.stdout
    models = install.home / ".local/state/streamdag/demo/medical_records/models"
    assert sorted(p.name for p in models.glob("*.onnx")) == [
        "assertion.onnx",
        "entities.onnx",
        "sections.onnx",
    ]


# streamdag.Client from the installed package, over gRPC and then REST.
_CLIENT = """
import sys
import streamdag

for address in sys.argv[1:]:
    with streamdag.Client(address) as client:
        out = client.infer("quickstart", {"text": ["Patient reports severe chest pain."]})
        print(out["label"][0].decode())
"""


def _quickstart(install: Install, folder: Path, bootstrap: str) -> None:
    spec = folder / "quickstart.yaml"
    where = _run(
        [str(install.python), "-c", "import streamdag.demo as d; print(d.__path__[0])"],
        cwd=folder,
        env=install.env,
    )
    shutil.copy(Path(where.stdout.strip()) / "quickstart.yaml", spec)
    created = install.streamdag("topics", spec.name, "--create", "-b", bootstrap, cwd=folder)
    assert created.returncode == 0, created.stderr
    http, grpc = free_port(), free_port()
    logs = folder.parent
    serve = ["serve", spec.name, "-b", bootstrap, "--http-port", str(http)]
    serve += ["--grpc-port", str(grpc)]
    with (
        _service(install, ["run", spec.name, "-b", bootstrap], folder, logs / "run.log"),
        _service(install, serve, folder, logs / "serve.log"),
    ):
        rest = _infer(install, folder, "--url", f"http://127.0.0.1:{http}")
        over_grpc = _infer(install, folder, "--grpc", f"127.0.0.1:{grpc}")
        labels = _run(
            [str(install.python), "-c", _CLIENT, f"127.0.0.1:{grpc}", f"http://127.0.0.1:{http}"],
            cwd=folder,
            env=install.env,
        )
        assert labels.stdout.split() == ["urgent", "urgent"], labels.stdout + labels.stderr
    for answer in (rest, over_grpc):
        outputs = {o["name"]: o for o in answer["outputs"]}  # type: ignore[attr-defined]
        assert {"score", "label"} <= set(outputs), answer
