"""The optional parts of streamdag, installed as pip extras, and the import that names the
extra to install when one is missing.

    onnx      onnxruntime                       runtime ``onnx``
    sklearn   scikit-learn                      runtime ``sklearn``
    otel      the OpenTelemetry SDK and OTLP    trace export (STREAMDAG_OTLP_ENDPOINT)
    demo      onnx and sklearn, onnx, skl2onnx  ``streamdag demo`` (it trains its models)
    clients   tritonclient                      the Open Inference Protocol clients of the docs
    all       every one of them

A worker or a gateway needs none: a pipeline of ``python`` steps runs on the core install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from streamdag.errors import ExtraMissing

__all__ = ["require"]


def require(module: str, *, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise ``ExtraMissing`` saying that ``what`` needs ``extra``.

    Only the absence of ``module`` itself is translated: an installed package that fails
    to import (a broken dependency of its own) raises its own error.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or ""
        if module == missing or module.startswith(f"{missing}."):
            raise ExtraMissing(what, extra, module) from exc
        raise
