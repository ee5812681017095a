"""The web view's bulk jobs against the real broker: a finished job and one still running,
with the counts ``streamdag jobs`` prints, in the API and on the page."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka_support import run_pipeline

import streamdag
from streamdag.bulk import read_jobs
from streamdag.cli.main import main

from .browser import dump_dom
from .ui_support import ui_server, write_pipeline

pytestmark = pytest.mark.kafka

ROWS = [{"x": float(i)} for i in range(300)]  # clean refuses 13


def jobs_of(url: str, pipeline: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/ui/api/pipelines/{pipeline}/jobs", timeout=60)
    assert response.status_code == 200, response.text
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


def test_running_and_finished_jobs_with_the_counts_of_streamdag_jobs(
    bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = write_pipeline(tmp_path, unique_name("ui"))
    with run_pipeline(spec, bootstrap), ui_server(spec, bootstrap) as server:
        url = f"http://127.0.0.1:{server.http_port}"
        assert jobs_of(url, spec.name) == []  # no job yet: no jobs topic either

        finished = list(streamdag.submit(spec, ROWS, kafka=bootstrap, job="finished"))
        assert sum(not r.ok for r in finished) == 1
        assert [j["job"] for j in jobs_of(url, spec.name)] == ["finished"]

        # A job still running: some answers taken, the rest sent or waiting; its last
        # checkpoint stays put while the generator is held here.
        running = streamdag.submit(spec, ROWS, kafka=bootstrap, job="running", max_in_flight=40)
        taken = [next(running) for _ in range(100)]
        assert len(taken) == 100
        time.sleep(1.6)  # past the view's refresh_s: a fresh snapshot
        shown = {j["job"]: j for j in jobs_of(url, spec.name)}
        dom = dump_dom(f"{url}/ui/")
        running.close()

        assert list(shown) == ["running", "finished"]  # newest first
        kept = read_jobs(bootstrap, spec.name)  # type: ignore[arg-type]
        for name in ("running", "finished"):
            assert shown[name] == kept[name].counts(), name
        assert shown["finished"] | {"updated": 0} == {
            "job": "finished", "state": "done", "rows": 300, "total": None, "results": 299,
            "failed": 1, "in_flight": 0, "updated": 0,
        }  # fmt: skip
        live = shown["running"]
        # Its first checkpoint came 0.2 s in, after the first 40 rows were sent.
        assert live["state"] == "open" and 40 <= live["rows"] < 300
        assert live["rows"] == live["results"] + live["failed"] + live["in_flight"]

        main(["jobs", str(spec.source), "-b", bootstrap])
        printed = capsys.readouterr().out
        for job in shown.values():
            figures = [job["state"], job["rows"], job["results"], job["failed"], job["in_flight"]]
            line = rf"{job['job']}\s+" + r"\s+".join(str(f) for f in figures) + r"\s"
            assert re.search(line, printed), (line, printed)

        # The page lists both jobs with the same figures, newest first.
        rows = re.findall(r'<tr data-job="([^"]+)">((?:<td[^>]*>[^<]*</td>)+)</tr>', dom)
        assert [name for name, _ in rows] == ["running", "finished"]
        for name, cells in rows:
            job = shown[name]
            values = re.findall(r"<td[^>]*>([^<]*)</td>", cells)
            assert values[:6] == [
                name, job["state"], str(job["rows"]), str(job["results"]), str(job["failed"]),
                str(job["in_flight"]),
            ]  # fmt: skip
        assert re.search(r'<p id="no-jobs" class="muted" hidden', dom)
