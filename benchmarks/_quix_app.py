"""The Quix Streams side of the peer benchmark: y = 2x, record by record, until SIGTERM.

Runs with the interpreter of the Quix environment (``_quixenv.py``), which has Quix
Streams, protobuf and numpy but not streamdag: it imports nothing from the project. The
Open Inference Protocol messages come from the project's generated ``inference_pb2``
module, imported from the folder given with ``--proto-dir`` (the module depends on
protobuf alone).

For each record of ``--source`` (key: the request id, value: a serialized
``ModelInferRequest`` with one FP32 tensor ``x``), it writes to ``--sink``, under the
same key, a ``ModelInferResponse`` with the tensor ``y = 2 * x``, as streamdag's
pipeline outputs carry it.

    python benchmarks/_quix_app.py --bootstrap HOST:PORT --source T --sink T
        --group G --guarantee at_least_once|exactly_once --proto-dir DIR
        --state-dir DIR [--commit-interval 0.1]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from quixstreams import Application

GUARANTEES = {"at_least_once": "at-least-once", "exactly_once": "exactly-once"}


def doubler(pb2: Any) -> Callable[[bytes], bytes]:
    """The work done on each record's value, with the message classes of ``pb2``."""
    request_type, response_type = pb2.ModelInferRequest, pb2.ModelInferResponse

    def double(value: bytes) -> bytes:
        request = request_type.FromString(value)
        response = response_type(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        )
        for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True):
            if tensor.name != "x" or tensor.datatype != "FP32":
                raise ValueError(f"expected an FP32 tensor x, got {tensor.datatype} {tensor.name}")
            x = np.frombuffer(raw, dtype="<f4").reshape(tuple(tensor.shape))
            y = x * 2
            response.outputs.add(name="y", datatype="FP32", shape=y.shape)
            response.raw_output_contents.append(y.tobytes())
        data: bytes = response.SerializeToString()
        return data

    return double


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True, help="the requests topic")
    parser.add_argument("--sink", required=True, help="the results topic")
    parser.add_argument("--group", required=True, help="the consumer group")
    parser.add_argument("--guarantee", choices=sorted(GUARANTEES), required=True)
    parser.add_argument("--proto-dir", required=True, help="the folder of inference_pb2.py")
    parser.add_argument("--state-dir", required=True, help="Quix's state folder (unused)")
    parser.add_argument(
        "--commit-interval", type=float, default=0.1, help="seconds between checkpoints"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    sys.path.insert(0, args.proto_dir)
    import inference_pb2

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee=GUARANTEES[args.guarantee],  # type: ignore[arg-type]
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        use_changelog_topics=False,
        loglevel="WARNING",
    )
    source = app.topic(args.source, value_deserializer="bytes", key_deserializer="bytes")
    sink = app.topic(args.sink, value_serializer="bytes", key_serializer="bytes")
    app.dataframe(source).apply(doubler(inference_pb2)).to_topic(sink)
    app.run()  # until SIGTERM: Quix then commits its last checkpoint and leaves the group
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
