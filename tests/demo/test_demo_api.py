"""The public names of streamdag.demo."""

from __future__ import annotations

import streamdag.demo


def test_public_names() -> None:
    assert sorted(streamdag.demo.__all__) == [
        "Answer",
        "DemoOptions",
        "DemoReport",
        "Document",
        "EXAMPLE_DIR",
        "MedicalRecords",
        "Models",
        "run_demo",
    ]
    for name in streamdag.demo.__all__:
        assert getattr(streamdag.demo, name) is not None
