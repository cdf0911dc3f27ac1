"""Emulated time: a clock that runs at a speed factor or is stepped by hand, plus a timer heap.

Every delay in the emulator (resource TTL, startup steps, idle timeout, failover window, callback
retries) is a timer on this heap, so one driver task serves every session and a test can move
time forward by minutes in microseconds. With ``speed == 0`` the clock is manual: time moves
only through :meth:`Clock.advance`, which fires due timers in order, synchronously.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable

#: Emulated epoch for manual clocks (2023-11-14T22:13:20Z): fixed, so runs are reproducible.
DEFAULT_EPOCH = 1_700_000_000.0

_log = logging.getLogger(__name__)


class Timer:
    """A scheduled callback; :meth:`cancel` is O(1) (the heap entry is skipped when popped)."""

    __slots__ = ("callback", "done", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.done = False

    def cancel(self) -> None:
        self.done = True


class Clock:
    """Emulated wall-clock time in epoch seconds, and the timers that fire on it.

    In running mode ``now() = epoch + (monotonic() - start) * speed`` and :meth:`run` (one
    asyncio task) fires timers as they fall due; every request also calls :meth:`run_due` first,
    so state is current even if the driver lags. In manual mode (``speed == 0``) nothing moves
    until :meth:`advance`.
    """

    def __init__(
        self,
        *,
        speed: float = 0.0,
        epoch: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self._mono = monotonic
        self._speed = speed
        start = epoch if epoch is not None else (DEFAULT_EPOCH if speed == 0 else time.time())
        self._base_emu = start
        self._base_real = monotonic()
        self._manual_now = start
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._firing = False
        self._wake: asyncio.Event | None = None

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def manual(self) -> bool:
        return self._speed == 0

    def now(self) -> float:
        """Emulated epoch seconds."""
        if self._speed == 0:
            return self._manual_now
        return self._base_emu + (self._mono() - self._base_real) * self._speed

    def now_ms(self) -> int:
        return round(self.now() * 1000)

    def rate_time(self) -> float:
        """The time base for request-rate limits: emulated when manual, else real monotonic.

        A client's rate limiter runs on real time, so a fast-forwarded emulator must still count
        real requests per real second; a manual clock makes limit tests deterministic.
        """
        return self._manual_now if self._speed == 0 else self._mono()

    @property
    def pending(self) -> int:
        return sum(1 for _, _, t in self._heap if not t.done)

    def next_deadline(self) -> float | None:
        while self._heap and self._heap[0][2].done:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback)
        earliest = not self._heap or when < self._heap[0][0]
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        if earliest and self._speed > 0 and self._wake is not None:
            self._wake.set()
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(self.now() + max(0.0, delay), callback)

    def advance(self, seconds: float) -> int:
        """Move time forward and fire every timer due by then, in order; returns how many fired.

        Each timer sees ``now()`` equal to its own due time (manual mode), so events carry the
        timestamps they would have had in real time. Exceptions from callbacks propagate.
        """
        if seconds < 0:
            raise ValueError("cannot move time backwards")
        if self._speed == 0:
            target = self._manual_now + seconds
            fired = self._fire_until(target, raise_errors=True)
            self._manual_now = max(self._manual_now, target)
            return fired
        self._base_emu += seconds
        return self._fire_until(self.now(), raise_errors=True)

    def run_due(self) -> int:
        """Fire the timers that are already due (running mode catch-up); safe to call anywhere."""
        return self._fire_until(self.now(), raise_errors=False)

    def set_speed(self, speed: float) -> None:
        """Change the speed factor (0 = manual) without a jump in emulated time."""
        if speed < 0:
            raise ValueError("speed must be >= 0")
        current = self.now()
        self._base_emu = current
        self._base_real = self._mono()
        self._manual_now = current
        self._speed = speed
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Drive timers in running mode until cancelled (one task for the whole emulator)."""
        self._wake = asyncio.Event()
        try:
            while True:
                delay: float | None = None
                if self._speed > 0:
                    self.run_due()
                    deadline = self.next_deadline()
                    if deadline is not None:
                        delay = max(0.0, (deadline - self.now()) / self._speed)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
        finally:
            self._wake = None

    def _fire_until(self, target: float, *, raise_errors: bool) -> int:
        if self._firing:  # a timer callback asked for a catch-up: the outer loop handles it
            return 0
        self._firing = True
        fired = 0
        try:
            while self._heap and self._heap[0][0] <= target:
                when, _, timer = heapq.heappop(self._heap)
                if timer.done:
                    continue
                timer.done = True
                if self._speed == 0 and when > self._manual_now:
                    self._manual_now = when
                fired += 1
                try:
                    timer.callback()
                except Exception:
                    if raise_errors:
                        raise
                    _log.exception("emulator timer callback failed")
        finally:
            self._firing = False
        return fired
