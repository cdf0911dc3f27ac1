"""The event-loop watchdog names the code that holds the loop, and says when it lets go."""

from __future__ import annotations

import asyncio
import time

import structlog
from prometheus_client import CollectorRegistry, Histogram

from service.watchdog import LoopWatchdog, watching


def hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # the bug under test: blocking code on the event loop


async def test_a_blocked_loop_is_reported_with_the_blocking_stack() -> None:
    lag = Histogram("lag", "lag", registry=CollectorRegistry(), buckets=(0.05, 0.2, 1))
    with structlog.testing.capture_logs() as logs:
        async with watching(LoopWatchdog(threshold=0.2, interval=0.02, lag=lag)) as dog:
            await asyncio.sleep(0.1)  # a few beats on time
            hold_the_loop(0.6)
            await asyncio.sleep(0.1)  # the loop turns again; the watchdog notices
            # Logged by the watchdog's thread: nothing on this loop to await.
            while not any(e["event"] == "event loop turns again" for e in logs):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    blocked = [e for e in logs if e["event"] == "event loop blocked"]
    assert dog.stalls == 1
    assert blocked and any("hold_the_loop" in line for line in blocked[0]["stack"])
    (again,) = [e for e in logs if e["event"] == "event loop turns again"]
    assert 0.4 < again["blocked_s"] < 5
    late = lag.collect()[0].samples
    over_200ms = next(s.value for s in late if s.name == "lag_bucket" and s.labels["le"] == "0.2")
    total = next(s.value for s in late if s.name == "lag_count")
    assert total - over_200ms >= 1  # the beat that came after the hold was late by it


async def test_a_turning_loop_is_not_reported() -> None:
    with structlog.testing.capture_logs() as logs:
        async with watching(LoopWatchdog(threshold=0.2, interval=0.02)) as dog:
            for _ in range(20):
                await asyncio.sleep(0.01)
    assert dog.stalls == 0
    assert not [e for e in logs if e["event"].startswith("event loop")]
