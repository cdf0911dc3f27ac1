"""``recctl serve``'s HTTP server: uvicorn, with SIGTERM turned into a drain and a clean exit.

uvicorn alone closes its listening socket at the first SIGTERM (a load balancer still sending
work gets refused connections, not an answer) and, once stopped, raises the signal again, so the
process dies of it (exit 143) however cleanly it shut down. Here the first SIGTERM or SIGINT
runs the app's :class:`service.drain.Drain` while the server still answers (503 to new work,
``/readyz`` unready), and only then lets uvicorn stop, with what is left of
``SHUTDOWN_TIMEOUT_SECONDS`` for the requests in flight; the exit code is 0. A second signal
stops at once.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette

from service.drain import Drain
from service.http_protocol import guarded_h11, guarded_httptools

log = structlog.get_logger("server")

#: The HTTP requests in flight get at least this long once the drain is over.
MIN_REQUEST_GRACE_SECONDS = 1.0


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Drain, timeout: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The signal handler (on the loop's thread, between two bytecodes): never re-raised."""
        if self._loop is None or not self.started or self.should_exit:
            self.force_exit = self.should_exit  # a second signal: stop waiting for anything
            self.should_exit = True
            return
        if self._draining is not None:
            log.warning("a second signal: stopping now", signal=sig)
            self.force_exit = True
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._start_drain, sig)

    def _start_drain(self, sig: int) -> None:
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain_then_exit(sig))

    async def _drain_then_exit(self, sig: int) -> None:
        started = time.monotonic()
        log.info("shutdown requested", signal=sig, timeout_s=self.timeout)
        try:
            await self.drain.run(self.timeout)
        finally:
            left = self.timeout - (time.monotonic() - started)
            grace = max(left, MIN_REQUEST_GRACE_SECONDS)
            self.config.timeout_graceful_shutdown = grace  # type: ignore[assignment]
            self.should_exit = True


def serve(
    app: Starlette,
    drain: Drain,
    host: str,
    port: int,
    timeout: float,
    access_log: bool,
    limits: ClientLimits | None = None,
    stack: str = "auto",
) -> None:
    """Run ``app`` until a signal, then drain and return (the caller exits 0)."""
    limits = limits or ClientLimits()
    loop, protocol = server_stack(stack)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # ours, set up by load_settings: JSON, redacted
        access_log=access_log,
        lifespan="on",  # a store that cannot open stops the start-up
        server_header=False,
        timeout_keep_alive=15,  # Agora advises keep-alive of 10 s or more for NCS callers
        limit_concurrency=limits.concurrency,
        loop=loop,
        http=protocol(
            limits.header_timeout, limits.on_header_timeout, limits.on_open, limits.on_close
        ),
    )
    DrainingServer(config, drain, timeout).run()


def server_stack(stack: str) -> tuple[str, Any]:
    """uvicorn's loop name and our guarded protocol factory for ``SERVER_STACK``: ``uvloop``
    (uvloop + httptools), ``asyncio`` (asyncio + h11), or ``auto``: uvloop + httptools when
    both are installed. Measured on the intake (docs/benchmarks.md): more webhooks a second
    at the same CPU a webhook."""
    if stack == "auto":
        stack = "uvloop" if _installed("uvloop") and _installed("httptools") else "asyncio"
    if stack == "uvloop":
        return "uvloop", guarded_httptools
    return "asyncio", guarded_h11


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class ClientLimits:
    """How long a client may take to send its headers, how many connections are served at
    once (uvicorn answers 503 past it), and the metrics' callbacks."""

    header_timeout: float = 10.0
    concurrency: int | None = 1000
    on_header_timeout: Callable[[], None] = _nothing
    on_open: Callable[[], None] = _nothing
    on_close: Callable[[], None] = _nothing
