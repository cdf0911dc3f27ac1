"""The composition root: :func:`create_app` wires settings, store, routes and components.

Nothing runs at import time. The lifespan opens the store (unless one is handed in), starts the
lifespan components in order with the :class:`AppContext`, and on shutdown stops them in reverse
order, lets hook tasks finish, and closes the store after it has drained its pending appends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ExceptionHandler

from reconcilers.events import NewEvent, Projection, Store
from service.config import Settings
from service.context import AppContext, EventHook, LifespanComponent
from service.drain import DrainMiddleware
from service.http import (
    ClientGuard,
    RequestIdMiddleware,
    error_response,
    http_exception_handler,
    server_error_handler,
)
from service.metrics import Metrics
from service.store import ObservableStore, PoolLimits, open_store
from service.store.base import WriteHealth
from service.store.errors import StoreError
from service.watchdog import LoopWatchdog, watching
from service.webhooks.agora import AgoraWebhook
from service.webhooks.cloudflare import CloudflareWebhook
from service.webhooks.storage import StorageWebhook

log = structlog.get_logger("app")

READY_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 1


def default_projections() -> Sequence[Projection]:
    """The domain's projections (imported late: the store needs them, tests may pass others)."""
    from reconcilers.projections import PROJECTIONS

    return PROJECTIONS


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    lifespan_components: Sequence[LifespanComponent] = (),
    on_event: EventHook | None = None,
    projections: Sequence[Projection] | None = None,
    exception_handlers: Mapping[Any, ExceptionHandler] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Starlette:
    """Build the ASGI app.

    ``store``: use this open store and leave closing it to the caller (tests); otherwise the
    lifespan opens ``settings.database_url`` with ``projections`` (default: the domain's).
    ``on_event`` and the hooks components subscribe get every newly stored notification.
    ``clock`` is "our time" (default: the system's), stamped on what the intake receives.
    Handlers in ``extra_routes`` reach the store through ``request.app.state.context.store``.
    """
    ctx = AppContext(settings=settings, metrics=Metrics())
    if clock is not None:
        ctx.clock = clock
    if on_event is not None:
        ctx.subscribe(on_event)
    webhook = AgoraWebhook(ctx)
    storage_webhook = StorageWebhook(ctx)
    cloudflare_webhook = CloudflareWebhook(ctx)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            opened = store
            if opened is None:
                opened = await open_store(
                    settings.database_url,
                    default_projections() if projections is None else projections,
                    writer_process=settings.store_writer == "process",
                    batch_interval=settings.store_batch_interval_ms / 1000,
                    pool=pool_limits(settings),
                    append_timeout=settings.store_append_timeout_seconds,
                )
                stack.push_async_callback(opened.close)
            if isinstance(opened, ObservableStore):
                opened.stats.observers.append(ctx.metrics.observe_batch)
            host = getattr(opened, "host", None)  # SQLite's writer: a child process or a thread
            if host is not None and isinstance(getattr(host, "starts", None), int):
                ctx.metrics.watch_writer(lambda: int(host.starts))
            ctx._store = opened
            watchdog = LoopWatchdog(
                settings.loop_stall_seconds, settings.loop_beat_seconds, lag=ctx.metrics.loop_lag
            )
            await stack.enter_async_context(watching(watchdog))
            stack.push_async_callback(ctx.drain_hooks)
            for component in lifespan_components:
                await stack.enter_async_context(component(ctx))
            webhook.log_startup()
            cloudflare_webhook.log_startup()
            log.info("started", store=settings.database_url.partition(":")[0])
            yield
            log.info("stopping")

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

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", ctx.metrics.endpoint, methods=["GET"]),
        Route("/webhooks/agora", webhook.handle, methods=["POST"]),
        Route("/webhooks/storage", storage_webhook.handle, methods=["POST", "HEAD"]),
        Route("/webhooks/cloudflare", cloudflare_webhook.handle, methods=["POST"]),
        *extra_routes,
    ]
    handlers: dict[Any, ExceptionHandler] = {
        HTTPException: http_exception_handler,
        StoreError: store_error_handler,
        Exception: server_error_handler,
        **(exception_handlers or {}),
    }
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(DrainMiddleware, drain=ctx.drain),
            Middleware(
                ClientGuard,
                body_timeout=settings.http_body_timeout_seconds,
                disconnects=ctx.metrics.client_disconnects,
                timeouts=ctx.metrics.body_timeouts,
            ),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.context = ctx
    return app


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


def pool_limits(settings: Settings) -> PoolLimits:
    """PostgreSQL's pool bounds from the settings (SQLite has no pool and ignores them)."""
    return PoolLimits(
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
        command_timeout=settings.database_command_timeout_seconds,
    )
