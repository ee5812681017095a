"""The demo at the terminal: progress lines, and Ctrl-C or SIGTERM as one way out."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType
from typing import Any

__all__ = ["Interrupts", "Progress", "Say"]

Say = Callable[[str], None]


class Interrupts:
    """SIGINT and SIGTERM end the demo the same way, once: outside the event loop they
    raise KeyboardInterrupt, inside it they cancel the session. Later signals only say
    that it is stopping, so that the clean-up that stops every process is not cut short."""

    def __init__(self) -> None:
        self.fired = False
        self._cancel: Callable[[], object] | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def cancelling(
        self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]
    ) -> Iterator[None]:
        self._cancel = lambda: loop.call_soon_threadsafe(task.cancel)
        try:
            yield
        finally:
            self._cancel = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.fired:
            print("stopping everything the demo started; please wait", file=sys.stderr)
            return
        self.fired = True
        print("interrupted: stopping everything the demo started ...", file=sys.stderr)
        if self._cancel is not None:
            self._cancel()
            return
        raise KeyboardInterrupt


class Progress:
    """``done/total`` on one line of a terminal, or a line per quarter elsewhere."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            end = "\n" if done == total else ""
            print(f"\r  {done}/{total} answered", end=end, file=sys.stderr, flush=True)
            return
        quarter = done * 4 // total
        if quarter != self.last:
            self.last = quarter
            if done:
                self.say(f"  {done}/{total} answered")
