"""A spec or a setting that needs an extra which is not installed fails with one line
naming the extra to install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streamdag.errors import ConfigError, ExtraMissing
from streamdag.extras import require
from streamdag.observability import tracing
from streamdag.runtimes import OnnxModel, OnnxModelSpec, SklearnModel, SklearnModelSpec


def test_an_onnx_model_without_the_onnx_extra_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    model = OnnxModel("clf", OnnxModelSpec(runtime="onnx", uri="m.onnx"), tmp_path / "m.onnx")
    with pytest.raises(ExtraMissing) as caught:
        model.load()
    assert str(caught.value) == (
        "model clf (runtime onnx) needs the 'onnx' extra (onnxruntime is not installed): "
        "pip install 'streamdag[onnx]'"
    )
    assert isinstance(caught.value, ConfigError)


def test_a_sklearn_model_without_the_sklearn_extra_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "m.joblib").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "sklearn", None)
    spec = SklearnModelSpec(runtime="sklearn", uri="m.joblib")
    with pytest.raises(ExtraMissing, match=r"pip install 'streamdag\[sklearn\]'"):
        SklearnModel("clf", spec, tmp_path / "m.joblib").load()


def test_trace_export_without_the_otel_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
    with pytest.raises(ExtraMissing, match=r"exporting traces .* pip install 'streamdag\[otel\]'"):
        tracing.configure_tracing("test", "127.0.0.1:4317")
    assert tracing.tracer() is None


def test_only_the_absence_of_the_package_itself_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ExtraMissing, match=r"probe needs the 'x' extra"):
        require("streamdag_absent_package", extra="x", what="probe")
    # Installed but broken (a dependency of its own is missing): its own error shows.
    (tmp_path / "streamdag_broken_package.py").write_text("import streamdag_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as caught:
        require("streamdag_broken_package", extra="x", what="probe")
    assert not isinstance(caught.value, ExtraMissing)
    assert caught.value.name == "streamdag_absent_dependency"
