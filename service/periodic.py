"""A periodic job as a small asyncio loop: run now, then every ``interval`` seconds.

What the controller's resync needs, and no more: runs never overlap (a run longer than the
interval is followed by the next at once, missed runs coalesce into that one); a failing run is
logged and the schedule goes on; stopping lets a run under way finish, within a grace period.
Time is the running loop's (its ``time()`` and timers), like :mod:`reconcilers.workqueue`'s, so
a virtual-time loop runs the schedule exactly and instantly in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("periodic")


class Periodic:
    def __init__(self, name: str, job: Callable[[], Awaitable[None]], interval: float) -> None:
        self.name = name
        self.job = job
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        """Run the job now and then on schedule, until :meth:`stop`."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=f"periodic:{self.name}")

    async def stop(self, grace: float = 5.0) -> None:
        """Start no run; wait up to ``grace`` seconds for the one under way, then cancel it."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            began = loop.time()
            self._idle.clear()
            try:
                await self.job()
            except Exception:
                log.exception("periodic job failed", job=self.name)
            finally:
                self._idle.set()
            wait = max(0.0, self.interval - (loop.time() - began))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._stopping.wait()
