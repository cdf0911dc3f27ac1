"""The composition root: settings in, the running service out, assembled in this one module.

Read top to bottom: settings turned into the domain's collaborators (storage targets, plan
config, providers behind their pacers, the reconciler); the replicas' pool, leases and shared
pacers on PostgreSQL; the :class:`Runtime` (controller, rooms API, recordings catalog) started
once the store is open; and the two apps: :func:`create_app`, the intake alone (webhooks,
probes, metrics), and :func:`build_app`, what ``recctl serve`` runs (the intake plus the
runtime, its routes and its event hook). :mod:`service.app` only puts built parts into a
Starlette app. Nothing runs at import time; the CLI's commands build their pieces from here.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import structlog
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ExceptionHandler

from reconcilers.engine import Reconciler
from reconcilers.events import Projection, Store
from reconcilers.identity import UidRange
from reconcilers.plan import PlanConfig
from reconcilers.providers.agora.adapter import AgoraProvider
from reconcilers.providers.agora.client import AgoraConfig
from reconcilers.providers.base import Provider, StorageTarget
from reconcilers.providers.cloudflare.adapter import CloudflareProvider
from reconcilers.providers.cloudflare.client import CloudflareConfig
from reconcilers.providers.http import network_transport
from reconcilers.ratelimit import provider_limiter, safe_rate
from service.api import recordings
from service.api.errors import ApiError, api_error_handler
from service.api.read_models import RecordingViews
from service.api.rooms import RoomsApi
from service.app import starlette_app
from service.config import Settings, StorageProfile, is_postgres
from service.context import AppContext, EventHook, LifespanComponent
from service.controller import Controller
from service.metrics import Metrics
from service.openapi import openapi
from service.provider_metrics import ProviderMetrics
from service.replicas.ownership import Ownership, check_current_pass
from service.replicas.pacer import PacerMetrics, SharedPacer
from service.replicas.replica import Replica
from service.storage.s3 import build_storages
from service.store import ObservableStore, PoolLimits, open_store
from service.store.postgres import open_pool
from service.watchdog import LoopWatchdog, watching
from service.webhooks.agora import AgoraWebhook
from service.webhooks.cloudflare import CloudflareWebhook
from service.webhooks.storage import StorageWebhook

log = structlog.get_logger("runtime")


# --- Settings to the domain's collaborators -------------------------------------------------


def default_projections() -> Sequence[Projection]:
    """The domain's projections (imported late: the store needs them, tests may pass others)."""
    from reconcilers.projections import PROJECTIONS

    return PROJECTIONS


def pool_limits(settings: Settings) -> PoolLimits:
    """The bounds of every PostgreSQL pool the service opens, the store's and the replica's
    (SQLite has no pool and ignores them)."""
    return PoolLimits(
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
        command_timeout=settings.database_command_timeout_seconds,
        replica_max_size=settings.database_replica_pool_max,
    )


def storage_target(profile: StorageProfile) -> StorageTarget:
    return StorageTarget(
        kind=profile.kind,
        bucket=profile.bucket,
        region=profile.region,
        access_key_id=profile.access_key_id.get_secret_value(),
        secret_access_key=profile.secret_access_key.get_secret_value(),
        endpoint=profile.endpoint,
        prefix=tuple(profile.prefix),
    )


def storage_resolver(settings: Settings) -> Callable[[str], StorageTarget]:
    targets = {name: storage_target(p) for name, p in settings.storage_profiles.items()}

    def resolve(name: str) -> StorageTarget:
        try:
            return targets[name]
        except KeyError:
            raise LookupError(f"storage profile {name!r} is not configured") from None

    return resolve


def plan_config(settings: Settings) -> PlanConfig:
    return PlanConfig(
        uids=UidRange(settings.agora_recorder_uid_base, settings.agora_recorder_uid_span),
        query_interval=settings.query_interval_seconds,
        stall_threshold=settings.stall_threshold_seconds,
        failover_window=settings.failover_window_seconds,
        # A stop begun with no result in a query interval died with its process (chaos seed
        # 100): stopped again within the orphan bound (2 query intervals + failover window).
        stop_retry_after=settings.query_interval_seconds,
    )


class Pacer(Protocol):
    """What stands before every call to one provider account: a local token bucket, or the
    database's pacer shared by every replica (:mod:`service.replicas.pacer`)."""

    async def acquire(self) -> None: ...


def gated(pacer: Pacer) -> Callable[[], Awaitable[None]]:
    """The ``before_request`` hook: wait for the rate limit, then make sure the pass this
    call belongs to still holds its lease (the wait may have outlasted it)."""

    async def before_request() -> None:
        await pacer.acquire()
        check_current_pass()

    return before_request


_Transport = httpx.AsyncBaseTransport


def build_providers(
    settings: Settings,
    limiter: Pacer,
    transport: httpx.AsyncBaseTransport | None = None,
    cloudflare_transport: httpx.AsyncBaseTransport | None = None,
    *,
    cloudflare_limiter: Pacer | None = None,
    metrics: ProviderMetrics | None = None,
) -> dict[str, Provider]:
    """One adapter per configured provider, each behind its provider's rate limit (``limiter``
    is Agora's; Cloudflare, when its account and app are set, gets ``cloudflare_limiter`` or
    a bucket of its own). With ``metrics``, every call's answer and rate-limit wait is counted."""

    def counted(name: str, inner: _Transport | None) -> _Transport | None:
        if metrics is None:
            return inner
        return metrics.transport(name, inner or network_transport())

    def gate(name: str, pacer: Pacer) -> Callable[[], Awaitable[None]]:
        hook = gated(pacer)
        return hook if metrics is None else metrics.timed(name, hook)

    agora = AgoraProvider(
        AgoraConfig(
            app_id=settings.agora_app_id,
            customer_key=settings.agora_customer_key.get_secret_value(),
            customer_secret=settings.agora_customer_secret.get_secret_value(),
            app_certificate=settings.agora_app_certificate.get_secret_value(),
            base_url=settings.agora_api_base_url,
        ),
        transport=counted("agora", transport),
        before_request=gate("agora", limiter),
    )
    providers: dict[str, Provider] = {"agora": agora}
    if settings.cloudflare_configured:
        providers["cloudflare"] = CloudflareProvider(
            CloudflareConfig(
                account_id=settings.cloudflare_account_id,
                app_id=settings.cloudflare_app_id,
                api_token=settings.cloudflare_api_token.get_secret_value(),
                base_url=settings.cloudflare_api_base_url,
            ),
            transport=counted("cloudflare", cloudflare_transport),
            before_request=gate(
                "cloudflare",
                cloudflare_limiter or provider_limiter(settings.cloudflare_rate_limit_qps),
            ),
        )
    return providers


def build_reconciler(
    settings: Settings,
    store: Store,
    providers: Mapping[str, Provider],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Reconciler:
    """The reconciler as the service runs it; ``recctl reconcile`` builds the same one."""
    return Reconciler(store, providers, storage_resolver(settings), plan_config(settings), clock)


# --- Replicas (PostgreSQL): the pool, the lease loop and the shared provider pacers ---------

@dataclass
class Replicas:
    replica: Replica
    agora_pacer: SharedPacer
    cloudflare_pacer: SharedPacer | None


@asynccontextmanager
async def replicas_of(settings: Settings, registry: CollectorRegistry) -> AsyncIterator[Replicas]:
    """Join the replicas of ``settings.database_url``; leave (leases given back) on exit. The
    replica's own pool (the lease loop, the pacers, NOTIFY; LISTEN has a connection of its own)
    is sized by :func:`pool_limits`, as the store's is."""
    pool = await open_pool(settings.database_url, pool_limits(settings).replica())
    try:
        replica = Replica(pool, settings.database_url, settings.lease_seconds, registry)
        metrics = PacerMetrics(registry)
        async with AsyncExitStack() as stack:
            agora = await stack.enter_async_context(
                SharedPacer(
                    pool,
                    f"agora:{settings.agora_app_id}",
                    settings.agora_rate_limit_qps,
                    replica.id,
                    metrics=metrics,
                )
            )
            cloudflare = None
            if settings.cloudflare_configured:
                cloudflare = await stack.enter_async_context(
                    SharedPacer(
                        pool,
                        f"cloudflare:{settings.cloudflare_account_id}",
                        settings.cloudflare_rate_limit_qps,
                        replica.id,
                        metrics=metrics,
                    )
                )
            await replica.start()
            try:
                yield Replicas(replica, agora, cloudflare)
            finally:
                await replica.stop()
    finally:
        await pool.close()


# --- The runtime: controller, rooms API and recordings catalog ------------------------------


@dataclass
class Runtime:
    """Started by the app's lifespan once the store is open; stopped before it closes."""

    settings: Settings
    transport: httpx.AsyncBaseTransport | None = None
    cloudflare_transport: httpx.AsyncBaseTransport | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    controller: Controller | None = None
    api: RoomsApi | None = None
    catalog: recordings.RecordingsApi | None = None
    providers: Mapping[str, Provider] = field(default_factory=dict)

    @asynccontextmanager
    async def component(self, ctx: AppContext) -> AsyncIterator[Runtime]:
        async with AsyncExitStack() as stack:
            replicas: Replicas | None = None
            if is_postgres(self.settings.database_url):
                replicas = await stack.enter_async_context(
                    replicas_of(self.settings, ctx.metrics.registry)
                )
                ctx.readiness["replica"] = replicas.replica.describe
                pacers = [p for p in (replicas.agora_pacer, replicas.cloudflare_pacer) if p]
                ctx.readiness["rate_shares"] = lambda: {p.provider: p.describe() for p in pacers}
            yield await stack.enter_async_context(self._running(ctx, replicas))

    @asynccontextmanager
    async def _running(self, ctx: AppContext, replicas: Replicas | None) -> AsyncIterator[Runtime]:
        settings = self.settings
        for message, variable in settings.startup_warnings():
            log.warning(message, env=variable)
        ownership: Ownership | None = None
        if replicas is None:
            limiter: Pacer = provider_limiter(settings.agora_rate_limit_qps)
            cloudflare_limiter: Pacer | None = None
        else:
            limiter, cloudflare_limiter = replicas.agora_pacer, replicas.cloudflare_pacer
            ownership = replicas.replica
        self.providers = build_providers(
            settings,
            limiter,
            self.transport,
            self.cloudflare_transport,
            cloudflare_limiter=cloudflare_limiter,
            metrics=ProviderMetrics(
                ctx.metrics.registry,
                ("agora", "cloudflare") if settings.cloudflare_configured else ("agora",),
            ),
        )
        reconciler = build_reconciler(settings, ctx.store, self.providers, self.clock)
        self.controller = Controller(
            reconciler,
            ctx.metrics.registry,
            rate_per_s=safe_rate(settings.agora_rate_limit_qps),
            workers=settings.reconcile_workers,
            resync_interval=settings.resync_interval_seconds,
            clock=self.clock,
            ownership=ownership,
        )
        if replicas is not None:  # the shares of the limit follow the work each replica has
            queue = self.controller.queue
            for pacer in (replicas.agora_pacer, replicas.cloudflare_pacer):
                if pacer is not None:
                    pacer.backlog = lambda: queue.depth
        views = RecordingViews(
            ctx.store, {name: p.bucket for name, p in settings.storage_profiles.items()}
        )
        ledger = recordings.CatalogLedger(views)  # every change of a room's wish keeps it
        self.api = RoomsApi(
            ctx.store,
            reconciler,
            self.providers,
            settings.api_tokens,
            settings.storage_profiles.keys(),
            self.controller,
            self.clock,
            ledger,
        )
        self.catalog = recordings.RecordingsApi(
            ctx.store,
            self.api,
            views,
            ledger,
            self.controller,
            reconciler.config.uids,
            build_storages(settings),
            settings.api_tokens,
            settings.download_url_expiry_seconds,
            self.clock,
        )
        ctx.subscribe(self.controller.notify)
        ctx.drain.add_step("reconcile passes", self.controller.drain)
        await self.controller.start()
        if replicas is not None:
            replica, controller = replicas.replica, self.controller
            replica.on_gain = controller.shards_gained
            replica.on_wake = controller.wake
            replica.on_reconnect = controller.resync_soon
            replica.run()
            # Once the passes are over (renewed meanwhile), the leases go back at once.
            ctx.drain.add_step("leases", replica.stop)
        try:
            yield self
        finally:
            await self.controller.stop()  # no pass runs any more: then the leases go back
            for provider in self.providers.values():
                await provider.aclose()

    def routes(self) -> list[BaseRoute]:
        """The API routes; they reach the API object once the lifespan has built it."""

        def delegate(name: str) -> Callable[[Request], Awaitable[Response]]:
            async def handler(request: Request) -> Response:
                if self.api is None:
                    raise ApiError(503, "starting", "the service is starting")
                method: Callable[[Request], Awaitable[Response]] = getattr(self.api, name)
                return await method(request)

            return handler

        return [
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/v1/rooms", delegate("list_rooms"), methods=["GET"]),
            Route("/v1/rooms/{room}/recording", delegate("get"), methods=["GET"]),
            Route("/v1/rooms/{room}/recording", delegate("put"), methods=["PUT"]),
            Route("/v1/rooms/{room}/recording", delegate("delete"), methods=["DELETE"]),
            *recordings.routes(lambda: self.catalog),
        ]


# --- The apps -------------------------------------------------------------------------------


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
    """The intake: webhooks, probes and metrics, with ``lifespan_components`` started in order
    once the store is open and stopped in reverse order before it closes.

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
    agora_webhook = AgoraWebhook(ctx)
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
            ctx.open(opened)
            watchdog = LoopWatchdog(
                settings.loop_stall_seconds, settings.loop_beat_seconds, lag=ctx.metrics.loop_lag
            )
            await stack.enter_async_context(watching(watchdog))
            stack.push_async_callback(ctx.drain_hooks)
            for component in lifespan_components:
                await stack.enter_async_context(component(ctx))
            agora_webhook.log_startup()
            cloudflare_webhook.log_startup()
            log.info("started", store=settings.database_url.partition(":")[0])
            yield
            log.info("stopping")

    routes: list[BaseRoute] = [
        Route("/webhooks/agora", agora_webhook.handle, methods=["POST"]),
        Route("/webhooks/storage", storage_webhook.handle, methods=["POST", "HEAD"]),
        Route("/webhooks/cloudflare", cloudflare_webhook.handle, methods=["POST"]),
        *extra_routes,
    ]
    return starlette_app(ctx, routes, lifespan, exception_handlers)


def build_app(settings: Settings, **runtime_options: Any) -> Starlette:
    """The whole service: intake, desired-state API and reconciler in one ASGI app."""
    runtime = Runtime(settings, **runtime_options)
    app = create_app(
        settings,
        clock=runtime.clock,
        extra_routes=runtime.routes(),
        lifespan_components=[runtime.component],
        exception_handlers={ApiError: api_error_handler},
    )
    app.state.runtime = runtime
    return app


def tune_gc() -> None:
    """Process-wide, for ``recctl serve`` once the app is built: what is alive then lives until
    exit, so it leaves the collector's sight (``gc.freeze``), and young collections run less
    often. Measured on the intake bench: ~20% more throughput, and full collections over the
    start-up heap no longer stall requests for tens of ms."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
