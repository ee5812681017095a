"""The example plug-in runtime (examples/keywords_runtime) in a pipeline on the real broker:
one model by its entry point name, one through ``runtime: custom``, run by `streamdag run`
worker processes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kafka_support import Workers, count_by_id, read_results, send_requests

from streamdag.kafka import ensure_topics
from streamdag.pipeline import derive_topics, load_spec

from ._helpers import objects

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).parents[2] / "examples" / "keywords_runtime" / "pipeline.yaml"
SYMPTOMS = ["pain", "fever", "cough", "dyspnea"]
RISKS = ["smoker", "diabetic", "obese"]
NOTES = [
    b"Chest pain and fever since Monday.",
    b"Obese smoker, diabetic, with a dry cough.",
    b"Routine visit, no complaint.",
    b"Painless swelling; denies fever. Smoker.",
]


def _flags(texts: list[bytes], keywords: list[str]) -> np.ndarray:
    words = [set(re.findall(r"\w+", text.decode().lower())) for text in texts]
    return np.array([[keyword in found for keyword in keywords] for found in words])


def test_a_pipeline_runs_the_plugin_by_name_and_as_custom(
    bootstrap: str,
    write_spec: Callable[[str], Path],
    unique_name: Callable[[str], str],
    workers: Callable[[Path], Workers],
) -> None:
    path = write_spec(EXAMPLE.read_text().replace("name: keywords", f"name: {unique_name('kw')}"))
    spec = load_spec(path)
    assert {name: model.runtime for name, model in spec.models.items()} == {
        "symptoms": "keywords",
        "risks": "custom",
    }
    ensure_topics(bootstrap, derive_topics(spec))
    requests = [
        (f"note-{i}", {"text": objects(*(NOTES[(i + k) % len(NOTES)] for k in range(1 + i % 2)))})
        for i in range(24)
    ]
    send_requests(bootstrap, spec.name, requests)
    workers(path).start()

    results = read_results(bootstrap, spec.name, until=len(requests), timeout=120, settle=1.0)

    assert count_by_id(results) == {rid: 1 for rid, _ in requests}
    sent = dict(requests)
    for result in results:
        assert result.error is None
        texts = list(sent[result.request_id]["text"])
        symptoms, risks = _flags(texts, SYMPTOMS), _flags(texts, RISKS)
        np.testing.assert_array_equal(result.arrays["symptoms"], symptoms)
        np.testing.assert_array_equal(result.arrays["symptoms_count"], symptoms.sum(axis=1))
        np.testing.assert_array_equal(result.arrays["risks"], risks)
        np.testing.assert_array_equal(result.arrays["risks_count"], risks.sum(axis=1))
