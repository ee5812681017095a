"""A real streamdag Server on free ports in a background event loop, for tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from streamdag.broker import free_port
from streamdag.pipeline import PipelineSpec, compile_plan
from streamdag.serving import DataPlane, PipelineGateway, Server, event_loop_factory


@contextmanager
def running_server(
    specs: list[PipelineSpec], gateway: PipelineGateway | None = None, **options: Any
) -> Iterator[Server]:
    """Start a Server on free ports in a background event loop; stop it on exit."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        ports = {"http_port": free_port(), "grpc_port": free_port()}
        server = Server(
            DataPlane([compile_plan(s) for s in specs], gateway=gateway),
            host="127.0.0.1",
            **{**ports, **options},
        )
        async with server:
            stop = asyncio.Event()
            state.update(server=server, stop=stop, loop=asyncio.get_running_loop())
            ready.set()
            await stop.wait()

    def target() -> None:
        try:
            # The event loop `streamdag serve` runs on.
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
                runner.run(main())
        except BaseException as exc:
            state["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=target, name="streamdag-test-server", daemon=True)
    thread.start()
    ready.wait(60)
    if "server" not in state:
        thread.join(10)
        raise state.get("error") or RuntimeError("server did not start")
    try:
        yield state["server"]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(30)
        assert not thread.is_alive(), "server did not stop"
        if "error" in state:
            raise state["error"]
