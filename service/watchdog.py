"""A watchdog for the event loop: says when it stops turning, and what it was doing.

Everything the service does runs on one loop; code that holds it (a long synchronous pass, a
blocking call) delays every webhook's answer and every heal, with nothing in the log to say
why. The loop beats every ``interval``; a thread watches the beats. When none has come for
``threshold`` seconds it logs the loop thread's stack (again every ``threshold`` while it
lasts), and logs the stall's length once the loop turns again. The lag of every beat is a
histogram (``event_loop_lag_seconds``), so a loop that is merely overloaded shows too.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from prometheus_client import Histogram

log = structlog.get_logger("watchdog")

_STACK_FRAMES = 12  # the innermost frames: where the loop is held, and by whom


class LoopWatchdog:
    def __init__(
        self,
        threshold: float = 1.0,
        interval: float = 0.1,
        lag: Histogram | None = None,
    ) -> None:
        self.threshold = threshold
        self.interval = interval
        self.lag = lag
        self.stalls = 0  # stalls seen (tests and metrics read it)
        self._last_beat = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Call on the loop's thread: that is the thread whose stack a stall reports."""
        self._loop_thread = threading.get_ident()
        self._last_beat = time.monotonic()
        self._beat(self._last_beat)
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._thread is not None:
            self._thread.join()

    def _beat(self, due: float) -> None:
        now = time.monotonic()
        if self.lag is not None:
            self.lag.observe(max(0.0, now - due))
        self._last_beat = now
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(self.interval, self._beat, now + self.interval)

    def _watch(self) -> None:
        reported_at: float | None = None  # when this stall was last reported
        stalled_since = 0.0
        # Its own pace, not the beats': fast beats must not wake this thread as often.
        while not self._stop.wait(self.threshold / 4):
            now = time.monotonic()
            silent = now - self._last_beat
            if silent < self.threshold:
                if reported_at is not None:
                    log.warning("event loop turns again", blocked_s=round(now - stalled_since, 3))
                    reported_at = None
                continue
            if reported_at is None:
                self.stalls += 1
                stalled_since = self._last_beat
            elif now - reported_at < self.threshold:
                continue
            reported_at = now
            log.warning(
                "event loop blocked",
                blocked_s=round(silent, 3),
                stack=self._loop_stack(),
            )

    def _loop_stack(self) -> list[str]:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return []
        summary = traceback.extract_stack(frame)[-_STACK_FRAMES:]
        return [f"{f.filename}:{f.lineno} {f.name}: {f.line or ''}".strip() for f in summary]


@asynccontextmanager
async def watching(watchdog: LoopWatchdog) -> AsyncIterator[LoopWatchdog]:
    watchdog.start()
    try:
        yield watchdog
    finally:
        watchdog.stop()
