"""The example's three models: trained in seconds, exported to ONNX, served by the onnx
runtime, and far better on held-out notes than a model that learned nothing."""

from __future__ import annotations

import numpy as np
from demo_support import Trained

from streamdag.pipeline import load_spec
from streamdag.runtimes import create_model


def test_models_beat_the_majority_class_by_far(trained: Trained) -> None:
    accuracy = trained.models.accuracy
    assert set(accuracy) == {"sections", "entities", "assertion"}
    report = trained.models.report
    for score in report.models:
        # Always answering the commonest class scores 0.37-0.65 here.
        assert score.accuracy >= 0.95, score
        assert score.accuracy - score.majority_baseline >= 0.3, score
        assert score.macro_f1 >= 0.9, score
        assert score.onnx_agreement >= 0.99, score  # the ONNX export predicts as sklearn does
    documents = report.documents
    assert documents.codes_exact >= 0.85
    assert 0.05 <= documents.review_rate <= 0.6
    assert documents.auto_codes_exact >= documents.codes_exact


def test_models_are_not_trained_again_while_the_code_is_the_same(trained: Trained) -> None:
    again = trained.example.ensure_models()
    assert not again.trained
    assert again.accuracy == trained.models.accuracy


def test_the_onnx_runtime_serves_a_clause_model(trained: Trained) -> None:
    spec = load_spec(trained.example.spec_path)
    model = create_model("entities", spec.models["entities"], spec.base_dir)
    model.load()
    try:
        clauses = np.array(
            [[b"denies chest pain", b"copd is worsening", b""], [b"bp 140/90", b"", b""]],
            dtype=object,
        )
        out = model.predict({"clauses": clauses})
    finally:
        model.unload()
    assert out["label"].shape == out["score"].shape == (2, 3)
    assert out["label"][0, :2].tolist() == [b"chest_pain", b"copd"]
    assert out["label"][1, 0] == b"none"
    assert out["score"].dtype == np.float32 and np.all(out["score"] <= 1.0)
