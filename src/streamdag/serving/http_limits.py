"""How long and how large a REST caller's request head may be (``limited_http``).

uvicorn's httptools protocol waits for a request's head (the request line and headers) as
long as the client takes, and llhttp sets no bound on its size: a client that sends its
headers one byte a second, or headers without end, holds a connection and its buffers
for ever. The REST door runs on the protocol class ``limited_http`` makes instead, whose
connections

- send a request's whole head within ``header_timeout_s`` of the connection opening, or
  of the first byte of the request (the next one, on a kept-alive connection): past it a
  request begun is answered 408 and the connection closed; a connection that sent
  nothing is closed;
- send at most ``max_header_bytes`` of head: beyond it the request is answered 431 and
  the connection closed, before any route runs.

Both are counted from the bytes that arrive, not from what the parser has finished, so a
header never completed counts too. The body is not bound here: the routes read it under
``serve_max_body_bytes``. An idle kept-alive connection is closed by uvicorn's
``timeout_keep_alive`` (5 s).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["limited_http"]

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def limited_http(header_timeout_s: float, max_header_bytes: int) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the limits above (``uvicorn.Config(http=...)``)."""

    class LimitedHttpToolsProtocol(_LimitedHead):
        timeout_s = header_timeout_s
        max_bytes = max_header_bytes

    return LimitedHttpToolsProtocol


class _LimitedHead(HttpToolsProtocol):
    timeout_s: float
    max_bytes: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a connection opens waiting for a request's head
        self._head_begun = False
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None

    # -- the connection ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # answered and closing: nothing more is read
        # A chunk that begins a request is counted by the parser's callbacks; one that
        # continues a head still unfinished when it ends is counted whole here.
        continues = self._in_head and self._head_begun
        super().data_received(data)
        if continues and self._in_head and self._refusal is None and self._over(len(data)):
            self._answer(*self._refused())

    # -- the parser's callbacks ----------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._head_begun = True
        self._head_bytes = 0
        if self._head_timer is None:  # the first request's deadline runs from the connect
            self._arm()

    def on_url(self, url: bytes) -> None:
        if self._over(len(url)):
            raise _HeadTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._over(len(name) + len(value) + 4):  # ": " and CRLF
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = self._head_begun = False
        self._disarm()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # A callback raised _HeadTooLarge, which stops the parser; uvicorn reports that as
        # a bad request, answered here with the refusal.
        if self._refusal is not None:
            self._answer(*self._refusal)
        else:
            super().send_400_response(msg)

    # -- the limits ---------------------------------------------------------------------
    def _over(self, size: int) -> bool:
        """Count ``size`` more bytes of head; whether that is over the limit."""
        self._head_bytes += size
        if self._head_bytes <= self.max_bytes:
            return False
        self._refusal = (431, f"request headers over {self.max_bytes} bytes")
        return True

    def _refused(self) -> tuple[int, str]:
        assert self._refusal is not None
        return self._refusal

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if not self._head_begun:
            self.transport.close()  # nothing of a request came: nothing to answer
            return
        self._refusal = (408, f"request headers not received within {self.timeout_s:g} s")
        self._answer(*self._refusal)

    def _answer(self, status: int, message: str) -> None:
        if self.transport.is_closing():
            return
        body = message.encode("ascii")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop the parser at a head over the limit."""
