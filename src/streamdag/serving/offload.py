"""Work on large messages leaves the event loop, so one caller cannot stall the others.

Both front doors serve every caller from one asyncio loop. Decoding a body of megabytes,
or writing a reply of millions of numbers as JSON, takes up to seconds; on the loop it
would hold every other request, health probes included, for as long. Work on a message
over ``INLINE_BYTES`` runs in a worker thread; smaller messages stay on the loop, where
the hop to a thread would cost more than the work.

A thread frees the loop only while it runs Python code or a call that releases the GIL.
One long C call (``json.dumps`` of a list of millions of numbers) holds the GIL from
start to end, so such work is done in slices (see ``rest_body`` and
``protocol.jsondata``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["INLINE_BYTES", "run_sized"]

INLINE_BYTES = 256 * 1024
"""Messages up to this size are decoded and encoded on the event loop."""

_P = ParamSpec("_P")
_T = TypeVar("_T")


async def run_sized(size: int, call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``call(*args, **kwargs)`` for a message of ``size`` bytes: on the loop when small,
    in a worker thread otherwise."""
    if size <= INLINE_BYTES:
        return call(*args, **kwargs)
    return await asyncio.to_thread(call, *args, **kwargs)
