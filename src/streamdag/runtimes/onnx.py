"""Runtime ``onnx``: an ONNX file run by onnxruntime on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, cast

from numpy.typing import NDArray
from pydantic import Field

from streamdag.errors import ConfigError, ModelError
from streamdag.extras import require
from streamdag.runtimes._text import decode_utf8, encode_utf8
from streamdag.runtimes.base import Model, ModelMetadata, TensorSpec, check_inputs, check_outputs
from streamdag.runtimes.config import RuntimeSpec, resolve_uri

__all__ = ["OnnxModel", "OnnxModelSpec"]

_DATATYPES: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


class OnnxModelSpec(RuntimeSpec):
    """An ONNX file run by onnxruntime on CPU."""

    runtime: Literal["onnx"]
    uri: str
    intra_op_threads: int = Field(default=1, ge=0)


class OnnxModel(Model):
    """Runs an ONNX file with onnxruntime's CPUExecutionProvider.

    Inputs and outputs are declared by the file itself. ONNX string tensors hold text, so
    BYTES inputs are decoded from UTF-8 and string outputs encoded back to BYTES.
    """

    spec_class = OnnxModelSpec

    def __init__(self, name: str, spec: OnnxModelSpec, path: Path) -> None:
        self.name = name
        self.spec = spec
        self.path = path
        self._session: Any = None
        self._metadata: ModelMetadata | None = None

    @classmethod
    def from_spec(cls, name: str, spec: RuntimeSpec, base_dir: Path) -> OnnxModel:
        onnx = cast(OnnxModelSpec, spec)
        return cls(name, onnx, resolve_uri(onnx.uri, base_dir))

    def load(self) -> None:
        if not self.path.is_file():
            raise ConfigError(f"model {self.name}: ONNX file {self.path} not found")
        # Imported here so that importing streamdag (the CLI, a server of other runtimes)
        # does not pay for it, and a core install without the extra runs other runtimes.
        ort = require("onnxruntime", extra="onnx", what=f"model {self.name} (runtime onnx)")

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.spec.intra_op_threads
        # Several workers or server threads run side by side; one inter-op thread each
        # keeps them from oversubscribing the cores.
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own error classes derive from Exception
            raise ConfigError(
                f"model {self.name}: cannot load ONNX file {self.path}: {exc}"
            ) from exc
        self._metadata = ModelMetadata(
            name=self.name,
            platform="onnxruntime_onnx",
            inputs=[self._tensor_spec("input", arg) for arg in session.get_inputs()],
            outputs=[self._tensor_spec("output", arg) for arg in session.get_outputs()],
        )
        self._session = session

    def predict(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        meta = self.metadata()
        rows = check_inputs(meta, inputs)
        feed = {
            name: decode_utf8(f"model {self.name}", name, array)
            if array.dtype.kind == "O"
            else array
            for name, array in inputs.items()
        }
        try:
            results = self._session.run(None, feed)
        except Exception as exc:
            raise ModelError(f"model {self.name}: onnxruntime failed: {exc}") from exc
        outputs = {
            spec.name: encode_utf8(value) for spec, value in zip(meta.outputs, results, strict=True)
        }
        check_outputs(meta, outputs, rows)
        return outputs

    def unload(self) -> None:
        self._session = None
        self._metadata = None

    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            raise ModelError(f"model {self.name} is not loaded; call load() first")
        return self._metadata

    def _tensor_spec(self, kind: str, arg: Any) -> TensorSpec:
        datatype = _DATATYPES.get(arg.type)
        if datatype is None:
            hint = (
                " (convert skl2onnx classifiers with options={'zipmap': False})"
                if str(arg.type).startswith("seq(map")
                else ""
            )
            raise ConfigError(
                f"model {self.name}: {kind} {arg.name!r} has ONNX type {arg.type}, which has "
                f"no OIP datatype{hint}"
            )
        # Symbolic ('batch') and unknown (None) dimensions are variable.
        shape = [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape or []]
        return TensorSpec(name=arg.name, datatype=datatype, shape=shape)
