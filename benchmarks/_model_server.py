"""One model server of the REST chain: ``python _model_server.py SPEC HTTP_PORT GRPC_PORT``.

It runs the server ``streamdag serve`` runs (``streamdag.serving.serve``: the REST and gRPC
doors over a ``DataPlane`` of the spec's models) but without the Kafka gateway, since the
chain calls only the model routes and must not depend on a broker. Stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from streamdag.pipeline import compile_plan, load_spec
from streamdag.serving import serve


def main(argv: list[str]) -> None:
    spec, http_port, grpc_port = Path(argv[0]), int(argv[1]), int(argv[2])
    asyncio.run(
        serve(
            [compile_plan(load_spec(spec))],
            host="127.0.0.1",
            http_port=http_port,
            grpc_port=grpc_port,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
