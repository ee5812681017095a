"""Regenerate ``_generated/`` from ``inference.proto`` with grpcio-tools.

Run ``python -m streamdag.protocol.generate``, or, if the generated files are broken or
missing (importing ``streamdag.protocol`` needs them), the file path:
``python src/streamdag/protocol/generate.py``. The output is committed, so only the
developer who edits the proto needs grpcio-tools (a dev dependency).
"""

from __future__ import annotations

import re
import sys
from importlib import resources
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "inference.proto"
OUT = HERE / "_generated"

_INIT = '''"""Code generated from ../inference.proto by ``python -m streamdag.protocol.generate``.

Do not edit: change the proto and regenerate.
"""
'''


def generate(out: Path = OUT) -> list[Path]:
    """Write the pb2, pyi and grpc modules into ``out`` and return their paths."""
    from grpc_tools import protoc  # type: ignore[import-untyped, unused-ignore]

    out.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO.parent}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        PROTO.name,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTO}")
    grpc_module = out / "inference_pb2_grpc.py"
    # protoc writes a top-level import, which only works with _generated on sys.path.
    source = grpc_module.read_text()
    fixed = re.sub(
        r"^import inference_pb2 as", "from . import inference_pb2 as", source, flags=re.M
    )
    grpc_module.write_text(fixed)
    pb2_module = out / "inference_pb2.py"
    # A private descriptor pool: tritonclient.grpc registers the same `inference.*`
    # messages in the default pool, and both must import in one interpreter.
    pb2_module.write_text(
        pb2_module.read_text().replace(
            "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(",
            "_POOL = _descriptor_pool.DescriptorPool()\nDESCRIPTOR = _POOL.AddSerializedFile(",
        )
    )
    (out / "__init__.py").write_text(_INIT)
    return [out / n for n in ("__init__.py", "inference_pb2.py", "inference_pb2.pyi")] + [
        grpc_module
    ]


def main() -> None:
    for path in generate():
        print(path, file=sys.stdout)


if __name__ == "__main__":
    main()
