"""Graceful shutdown: a replica told to stop (SIGTERM) stops taking work before it stops.

Kubernetes, systemd and ``docker stop`` send SIGTERM and, a grace period later, SIGKILL. In
between, :meth:`Drain.run`: marks the replica draining (``/readyz`` answers 503, so load
balancers take it out; every request that would make work, webhooks and API writes, is answered
503 with ``Retry-After``, which providers and clients retry, on another replica when there is
one), then runs the drain steps in order: the controller lets the passes in flight finish and
starts none, then whatever else registered (the replica layer releases its leases so that
others take its rooms at once instead of after ``LEASE_SECONDS``). Then the HTTP server stops
(:mod:`service.server`) and the lifespan closes the store once its pending appends are durable.

All of it within ``SHUTDOWN_TIMEOUT_SECONDS``; a step still running then is abandoned (and
cancelled by the lifespan's stop). Nothing acknowledged is lost either way: a 2xx is only sent
once its event is durable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from service.http import error_response

log = structlog.get_logger("drain")

DrainStep = Callable[[], Awaitable[None]]
RETRY_AFTER_SECONDS = 1
#: Methods that only read: still served while draining (reads make no work).
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Drain:
    """The replica's draining flag and the steps that empty it, run once."""

    def __init__(self) -> None:
        self.draining = False
        self._steps: list[tuple[str, DrainStep]] = []
        self._done: asyncio.Event | None = None

    def add_step(self, name: str, step: DrainStep) -> None:
        """Run ``step`` when draining, after those added before it."""
        self._steps.append((name, step))

    async def run(self, within: float) -> bool:
        """Drain within ``within`` seconds; ``False`` when a step failed or ran out of time.

        A second call waits for the first to finish instead of draining again.
        """
        if self._done is not None:
            await self._done.wait()
            return True
        self._done = asyncio.Event()
        self.draining = True
        started = time.monotonic()
        log.info("draining", timeout_s=within, steps=[name for name, _ in self._steps])
        complete = True
        for name, step in self._steps:
            left = within - (time.monotonic() - started)
            try:
                async with asyncio.timeout(max(left, 0.0)):
                    await step()
            except TimeoutError:
                log.error("drain step ran out of time", step=name, timeout_s=within)
                complete = False
            except Exception as exc:
                log.error("drain step failed", step=name, error=repr(exc))
                complete = False
        log.info("drained", seconds=round(time.monotonic() - started, 3), complete=complete)
        self._done.set()
        return complete


class DrainMiddleware:
    """Pure ASGI: while draining, answer 503 to every request that is not a read."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.drain.draining and scope["type"] == "http" and scope["method"] not in _READ_METHODS:
            response = error_response(
                503, "draining", "this replica is shutting down; retry (on another replica)"
            )
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
