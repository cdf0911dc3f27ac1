"""The ASGI app from parts already built: routes, middleware and error handlers, nothing else.

:mod:`service.runtime` (the composition root) builds the :class:`AppContext`, the webhook
intakes, the API and the lifespan, and hands them to :func:`starlette_app`. What lives here
is what every app serves whatever it was built with: ``/healthz``, ``/readyz``, ``/metrics``,
and the translation of a failing event log into a 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ExceptionHandler

from reconcilers.events import NewEvent
from service.context import AppContext
from service.drain import DrainMiddleware
from service.http import (
    ClientGuard,
    RequestIdMiddleware,
    error_response,
    http_exception_handler,
    server_error_handler,
)
from service.store.base import WriteHealth
from service.store.errors import StoreError

log = structlog.get_logger("app")

READY_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 1

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def starlette_app(
    ctx: AppContext,
    routes: Sequence[BaseRoute],
    lifespan: Lifespan,
    exception_handlers: Mapping[Any, ExceptionHandler] | None = None,
) -> Starlette:
    """The app serving ``routes`` after the probes and metrics; ``app.state.context`` is
    ``ctx``, which is how handlers reach the store once the lifespan has opened it."""
    handlers: dict[Any, ExceptionHandler] = {
        HTTPException: http_exception_handler,
        StoreError: store_error_handler,
        Exception: server_error_handler,
        **(exception_handlers or {}),
    }
    app = Starlette(
        routes=[*probe_routes(ctx), *routes],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(DrainMiddleware, drain=ctx.drain),
            Middleware(
                ClientGuard,
                body_timeout=ctx.settings.http_body_timeout_seconds,
                disconnects=ctx.metrics.client_disconnects,
                timeouts=ctx.metrics.body_timeouts,
            ),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.context = ctx
    return app


def probe_routes(ctx: AppContext) -> list[BaseRoute]:
    """Liveness, readiness (the store answers and takes writes; not draining) and metrics."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if ctx.drain.draining:
            return error_response(503, "draining", "this replica is shutting down")
        try:
            await asyncio.wait_for(ctx.store.ping(), READY_TIMEOUT_SECONDS)
        except Exception as exc:
            log.warning("not ready", error=repr(exc))
            return error_response(503, "not_ready", "the event log is not reachable")
        if isinstance(ctx.store, WriteHealth) and ctx.store.write_problem() is not None:
            # Commits fail or hang: ready again only once a probe append gets through.
            problem = await _write_probe(ctx)
            if problem is not None:
                log.warning("not ready", error=problem)
                return _unavailable("not_ready", f"the event log takes no writes: {problem}")
        body: dict[str, Any] = {"status": "ready"}
        for name, describe in ctx.readiness.items():
            body[name] = describe()
        return JSONResponse(body)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", ctx.metrics.endpoint, methods=["GET"]),
    ]


PROBE_BUCKET_SECONDS = 10
"""At most one probe append per this many seconds while writes fail (a bounded log cost)."""


async def _write_probe(ctx: AppContext) -> str | None:
    """Append one tiny event, within ``READY_TIMEOUT_SECONDS``: ``None`` when it is durable."""
    bucket = int(time.time() // PROBE_BUCKET_SECONDS)
    probe = NewEvent(
        source="api",  # our own, with no room: no projection folds it
        dedup_key=f"write-probe|{bucket}",
        type="service.write_probe",
        payload={},
    )
    try:
        await asyncio.wait_for(ctx.store.append(probe), READY_TIMEOUT_SECONDS)
    except Exception as exc:
        return repr(exc) if not isinstance(exc, TimeoutError) else "a probe append timed out"
    return None


def _unavailable(code: str, message: str) -> Response:
    response = error_response(503, code, message)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


async def store_error_handler(request: Request, exc: Exception) -> Response:
    """The event log failed or timed out (a full or frozen disk): nothing was stored, so the
    caller is told to retry, never shown a traceback (issue 20: ``PUT`` answered 500)."""
    log.warning("the event log failed a request", path=request.url.path, error=repr(exc))
    return _unavailable("unavailable", "the event log is unavailable; retry")
