"""What a running app shares with its handlers and lifespan components.

:func:`service.runtime.create_app` builds one :class:`AppContext`; its lifespan opens the store and
hands the context to every component (the controller, for instance), which may subscribe to
new events with :meth:`AppContext.subscribe` and register metrics on ``metrics.registry``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from reconcilers.events import Event, Store
from service.config import Settings
from service.drain import Drain
from service.metrics import Metrics

log = structlog.get_logger("app")

EventHook = Callable[[Event], Awaitable[None] | None]
"""Told about every newly stored event. A coroutine result runs as a task, off the request."""

LifespanComponent = Callable[["AppContext"], AbstractAsyncContextManager[object]]
"""Started after the store opens (in order), stopped before it closes (in reverse order)."""


@dataclass
class AppContext:
    settings: Settings
    metrics: Metrics
    #: "Our time": it stamps what the intake receives; the reconciler reads the same clock.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    hooks: list[EventHook] = field(default_factory=list)
    #: Sections of ``/readyz`` (``replica``: who we are, our leases, the other replicas).
    readiness: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    #: Set on SIGTERM: the replica stops taking work (:mod:`service.drain`).
    drain: Drain = field(default_factory=Drain)
    _store: Store | None = None
    _tasks: set[asyncio.Future[None]] = field(default_factory=set)

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the app has not started: its store is not open")
        return self._store

    def open(self, store: Store) -> None:
        """The lifespan has opened the store: handlers and components may use it now."""
        self._store = store

    def subscribe(self, hook: EventHook) -> None:
        self.hooks.append(hook)

    def publish(self, event: Event) -> None:
        """Tell every hook, without waiting and without letting a hook fail the caller."""
        for hook in self.hooks:
            try:
                result = hook(event)
            except Exception:
                log.exception("event hook failed", seq=event.seq)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event hook failed", error=repr(task.exception()))

    async def drain_hooks(self) -> None:
        """At shutdown: cancel hook tasks still running and wait for them to finish."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
