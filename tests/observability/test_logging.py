"""Log lines about records carry pipeline, step, request id and trace id; JSON on demand."""

from __future__ import annotations

import json
import logging

import pytest

from streamdag.observability.logging import configure_logging, record_context


def test_json_lines_carry_the_record_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", fmt="json")
    try:
        logging.getLogger("streamdag.engine").warning(
            "record failed: %s",
            "boom",
            extra=record_context("triage", "coder", "req-9", "ab" * 16),
        )
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    finally:
        configure_logging("INFO", fmt="text")
    assert line["message"] == "record failed: boom"
    assert (line["pipeline"], line["step"], line["request_id"], line["trace_id"]) == (
        "triage",
        "coder",
        "req-9",
        "ab" * 16,
    )
    assert line["level"] == "WARNING" and line["logger"] == "streamdag.engine"


def test_text_lines_stay_plain(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", fmt="text")
    logging.getLogger("streamdag.engine").info(
        "worker start: step=%s", "coder", extra=record_context("triage", "coder")
    )
    assert "INFO streamdag.engine: worker start: step=coder" in capsys.readouterr().err
