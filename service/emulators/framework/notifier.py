"""Callback delivery: a background sender that POSTs signed notices, with a retry policy.

Emitting never blocks a request: notices go into a queue that ``concurrency`` worker tasks
drain. What a notice looks like on the wire (body, signature headers) is the notice's own
business (:class:`Outgoing`); which answers count as delivered or deserve a retry is the
provider's (:class:`RetryPolicy`). Agora resends anything but a 200
(``docs/providers/agora.md#9-signatures-retries-allowlist``); RealtimeKit retries only 5xx and
network errors (``docs/providers/cloudflare.md#24-retries``). A failed attempt is resent after each
of ``retry_delays`` (emulated seconds, so a manual clock controls them), then given up. Drop,
duplicate, delay and reorder faults are decided when a notice is emitted, from seeded streams, so a
run is reproducible.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import httpx

from service.emulators.framework.clock import Clock
from service.emulators.framework.faults import FaultInjector
from service.emulators.framework.poster import Poster

#: Emulated seconds a reordered notice waits for a successor before it is sent anyway.
REORDER_HOLD_SECONDS = 1.0


class Outgoing(Protocol):
    """A notice ready to send: where to, and its bytes and headers for one attempt."""

    @property
    def url(self) -> str: ...

    def render(self, notify_ms: int) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one attempt (a retry may refresh timestamps or ids)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the control API shows of this notice."""
        ...


N = TypeVar("N", bound=Outgoing)


@dataclass(frozen=True)
class RetryPolicy:
    """Which statuses deliver, and which failures are retried (``None`` = no answer)."""

    delivered: Callable[[int], bool] = lambda status: status == 200
    retry: Callable[[int | None], bool] = lambda status: True


@dataclass(frozen=True)
class Attempt:
    notify_ms: int
    status: int | None
    error: str | None


@dataclass(eq=False)
class Delivery(Generic[N]):
    """One copy of a notice on its way: its attempts and how it ended."""

    notice: N
    copy: int = 0
    outcome: str = "pending"  # pending | delivered | failed | dropped
    attempts: list[Attempt] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.notice.describe(),
            "copy": self.copy,
            "outcome": self.outcome,
            "attempts": [
                {"notifyMs": a.notify_ms, "status": a.status, "error": a.error}
                for a in self.attempts
            ],
        }


class Notifier(Generic[N]):
    """Queue + workers + retry policy. ``client`` may be injected (e.g. an ASGI transport)."""

    def __init__(
        self,
        clock: Clock,
        faults: FaultInjector[Any],
        *,
        timeout: float = 10.0,
        retry_delays: tuple[float, ...] = (0.0, 2.0, 5.0),
        concurrency: int = 8,
        redundant: bool = False,
        log_size: int = 10_000,
        client: httpx.AsyncClient | Poster | None = None,
        policy: RetryPolicy | None = None,
        name: str = "callbacks",
    ) -> None:
        self._policy = policy or RetryPolicy()
        self._name = name
        self._clock = clock
        self._faults = faults
        self._timeout = timeout
        self._retry_delays = retry_delays
        self._concurrency = concurrency
        self._redundant = redundant
        self._client = client
        self._owns_client = client is None
        self._queue: asyncio.Queue[Delivery[N]] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._held: list[Delivery[N]] = []
        self.log: deque[Delivery[N]] = deque(maxlen=log_size)
        self.stats: Counter[str] = Counter()

    # ---- emitting (synchronous, called by the engine) -------------------------------------

    def emit(self, notice: N) -> None:
        plan = self._faults.callback_plan(self._redundant)
        self.stats["emitted"] += 1
        if plan.drop:
            self.stats["dropped"] += 1
            self.log.append(Delivery(notice, outcome="dropped"))
            return
        copies = [Delivery(notice, copy=i) for i in range(plan.copies)]
        self.stats["duplicated"] += plan.copies - 1
        self.log.extend(copies)
        if plan.hold:
            self.stats["reordered"] += 1
            self._held.extend(copies)
            self._clock.call_later(REORDER_HOLD_SECONDS, self._release_held)
            return
        if plan.delay > 0:
            self.stats["delayed"] += 1
            self._clock.call_later(plan.delay, lambda: self._enqueue(copies))
        else:
            self._enqueue(copies)
        self._release_held()

    def _release_held(self) -> None:
        held, self._held = self._held, []
        self._enqueue(held)

    def _enqueue(self, deliveries: list[Delivery[N]]) -> None:
        for delivery in deliveries:
            self._queue.put_nowait(delivery)
        if deliveries:
            self._ensure_workers()

    # ---- sending (asynchronous) -----------------------------------------------------------

    def _ensure_workers(self) -> None:
        if self._workers:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the queue waits for start() or the next emit inside one
        if self._client is None:
            self._client = Poster(self._timeout, max_idle=self._concurrency * 2)
        self._workers = [
            asyncio.create_task(self._work(), name=f"{self._name}-{i}")
            for i in range(self._concurrency)
        ]

    async def start(self) -> None:
        self._ensure_workers()

    async def drain(self) -> None:
        """Wait until every queued notice has been delivered or given up (or parked for a
        retry/delay timer on the emulated clock, which only ``advance`` or time releases)."""
        self._ensure_workers()
        await self._queue.join()

    async def aclose(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _work(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                await self._attempt(delivery)
            finally:
                self._queue.task_done()

    async def _attempt(self, delivery: Delivery[N]) -> None:
        assert self._client is not None
        notice = delivery.notice
        notify_ms = self._clock.now_ms()
        raw, headers = notice.render(notify_ms)
        status: int | None = None
        error: str | None = None
        try:
            # wait_for enforces the deadline whatever the transport (ASGI ones ignore timeouts)
            response = await asyncio.wait_for(
                self._client.post(notice.url, content=raw, headers=headers),
                self._timeout,
            )
            status = response.status_code
        except Exception as exc:  # any transport failure counts as "no 200": retry
            error = type(exc).__name__
        delivery.attempts.append(Attempt(notify_ms, status, error))
        self.stats["attempts"] += 1
        if status is not None and self._policy.delivered(status):
            delivery.outcome = "delivered"
            self.stats["delivered"] += 1
            return
        retry = len(delivery.attempts) - 1
        if retry >= len(self._retry_delays) or not self._policy.retry(status):
            delivery.outcome = "failed"
            self.stats["failed"] += 1
            return
        self.stats["retried"] += 1
        delay = self._retry_delays[retry]
        if delay <= 0:
            self._queue.put_nowait(delivery)  # before task_done: drain() keeps waiting
        else:
            self._clock.call_later(delay, lambda: self._enqueue([delivery]))
