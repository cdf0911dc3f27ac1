"""An emulator's background work: the clock driver task and the callback sender.

Both emulators start them with the ASGI app's lifespan, with ``async with emulator``, or lazily
(``_ensure_driver``) on the first request when the app is mounted without a lifespan, and stop
them the same way; this mixin is that lifecycle, written once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, ClassVar, Self

from starlette.applications import Starlette

from service.emulators.framework.clock import Clock
from service.emulators.framework.notifier import Notifier


class EmulatorLifecycle:
    """Start/stop of ``self.clock``'s driver task and ``self.notifier`` (idempotent both ways).

    A subclass sets ``clock`` and ``notifier``, names its driver task (``DRIVER_NAME``), sets
    ``_driver = None`` before the app can run, and passes ``self._lifespan`` to its Starlette app.
    """

    DRIVER_NAME: ClassVar[str] = "emulator-clock"

    clock: Clock
    notifier: Notifier[Any]
    _driver: asyncio.Task[None] | None

    def _ensure_driver(self) -> None:
        """Start the clock driver if a loop is running and it is not (lazy start)."""
        if self._driver is not None and not self._driver.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._driver = loop.create_task(self.clock.run(), name=self.DRIVER_NAME)

    async def start(self) -> None:
        """Start the clock driver and the callback sender (idempotent)."""
        self._ensure_driver()
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
