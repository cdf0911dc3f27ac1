"""uvicorn's h11 and httptools protocols with a deadline on a request's headers, and open
connections counted.

uvicorn bounds only the idle time between two requests (``timeout_keep_alive``): a client that
connects and sends nothing, or half a request line, holds its descriptor for ever (issue 20:
500 silent connections all still open after 70 s). Here each request's headers must be in
within ``header_timeout`` seconds of the connection (or of the request's first byte on a kept
alive one), or the connection is closed. The body's deadline is the app's
(:class:`service.http.ClientGuard`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def guarded_h11(
    header_timeout: float,
    on_timeout: Callable[[], None],
    on_open: Callable[[], None],
    on_close: Callable[[], None],
) -> type[H11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``; the callbacks feed the metrics."""

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            on_open()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            on_close()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self._arm()  # part of a request line or of its headers: no further
            else:
                self._disarm()

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                on_timeout()
                self.transport.close()

    return GuardedH11Protocol


def guarded_httptools(
    header_timeout: float,
    on_timeout: Callable[[], None],
    on_open: Callable[[], None],
    on_close: Callable[[], None],
) -> type[HttpToolsProtocol]:
    """The same guard on uvicorn's httptools protocol (the C parser): a request's headers are
    due ``header_timeout`` seconds after the connection opens, or after the request's first
    byte on a kept-alive one."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _in_headers = True  # a new connection owes its first request's headers

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            on_open()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            on_close()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True
            self._arm()

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._disarm()
            super().on_headers_complete()

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if self._in_headers and not self.transport.is_closing():
                on_timeout()
                self.transport.close()

    return GuardedHttpToolsProtocol
