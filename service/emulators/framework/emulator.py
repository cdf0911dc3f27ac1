"""What every emulator is built from, wired once from its settings: the emulated clock and its
driver task, the fault injector, the request statistics, the callback sender, and the ASGI app
(the control API under ``/_emulator``, the provider's gateway on every other path).

Background work (the clock driver and the callback sender) starts with the app's lifespan, with
``async with emulator``, or lazily (:meth:`Emulator.wake`) on the first request when the app is
mounted without a lifespan, and stops the same way. A provider's emulator adds its engine, its
gateway and its control routes, and the methods the control API calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import BaseRoute, Mount, Route

from service.emulators.framework.clock import Clock
from service.emulators.framework.config import EmulatorSettings
from service.emulators.framework.faults import FaultConfig, FaultInjector, ProviderErrors
from service.emulators.framework.notifier import Notifier, Outgoing, RetryPolicy
from service.emulators.framework.ratelimit import RequestStats

F = TypeVar("F", bound=FaultConfig)
N = TypeVar("N", bound=Outgoing)


class Emulator(Generic[F]):
    """The shared parts of one emulated provider account, from ``settings``.

    A subclass names its driver task (``DRIVER_NAME``) and its gateway's errors (``ERRORS``),
    calls :meth:`_notifier` for its callback sender and, once its parts are built,
    :meth:`_serve` for its app.
    """

    DRIVER_NAME: ClassVar[str] = "emulator-clock"
    ERRORS: ClassVar[ProviderErrors]

    notifier: Notifier[Any]
    app: Starlette

    def __init__(
        self,
        settings: EmulatorSettings,
        faults: F,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self.clock = Clock(speed=settings.speed, epoch=settings.epoch, monotonic=monotonic)
        self.faults: FaultInjector[F] = FaultInjector(faults, settings.seed, self.ERRORS)
        self.stats = RequestStats(self.clock.rate_time)
        self._driver: asyncio.Task[None] | None = None

    def _notifier(
        self,
        client: httpx.AsyncClient | None,
        policy: RetryPolicy,
        name: str,
        *,
        redundant: bool = False,
    ) -> Notifier[N]:
        """The callback sender, with the settings' timeout, retries, concurrency and log."""
        settings = self._settings
        return Notifier(
            self.clock,
            self.faults,
            timeout=settings.callback_timeout,
            retry_delays=settings.callback_retry_delays,
            concurrency=settings.callback_concurrency,
            redundant=redundant,
            log_size=settings.callback_log_size,
            client=client,
            policy=policy,
            name=name,
        )

    def _serve(
        self,
        control: Sequence[BaseRoute],
        gateway: Callable[[Request], Any],
        methods: list[str],
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        """``self.app``: ``control`` under ``/_emulator``, then ``routes``, then ``gateway`` on
        every other path for ``methods``."""
        self.app = Starlette(
            routes=[
                Mount("/_emulator", routes=list(control)),
                *routes,
                Route("/{path:path}", gateway, methods=methods),
            ],
            lifespan=self._lifespan,
        )

    # ---- faults, time ---------------------------------------------------------------------

    def advance(self, seconds: float) -> int:
        """Move emulated time forward, firing every due timer in order; returns how many.
        Notifications they cause are queued; ``await settle()`` waits for their delivery."""
        return self.clock.advance(seconds)

    async def settle(self) -> None:
        """Wait until every queued notification has been delivered or given up."""
        await self.notifier.drain()

    @property
    def fault_config(self) -> F:
        return self.faults.config

    def set_faults(self, faults: F) -> None:
        self.faults.reconfigure(faults)

    def qps_limit(self) -> float | None:
        """The request limit in force: the faults' override, else the settings'."""
        override = self.faults.config.qps_limit
        return override if override is not None else self._settings.qps_limit

    # ---- background work ------------------------------------------------------------------

    def wake(self) -> None:
        """Start the clock driver if a loop is running and it is not (lazy start): on every
        request, and on anything that may schedule a timer."""
        if self._driver is not None and not self._driver.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._driver = loop.create_task(self.clock.run(), name=self.DRIVER_NAME)

    async def start(self) -> None:
        """Start the clock driver and the callback sender (idempotent)."""
        self.wake()
        await self.notifier.start()

    async def aclose(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver
        await self.notifier.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.aclose()
