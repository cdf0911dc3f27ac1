"""The emulated clock: manual stepping, speed factors, and the timer heap's ordering."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from service.emulators.agora import Clock


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_advance_fires_due_timers_in_order_at_their_own_time() -> None:
    clock = Clock(speed=0, epoch=1000.0)
    seen: list[tuple[str, float]] = []
    clock.call_later(5, lambda: seen.append(("b", clock.now())))
    clock.call_later(2, lambda: seen.append(("a", clock.now())))
    clock.call_later(5, lambda: seen.append(("c", clock.now())))
    clock.call_later(9, lambda: seen.append(("late", clock.now())))
    assert clock.advance(6) == 3
    assert seen == [("a", 1002.0), ("b", 1005.0), ("c", 1005.0)]
    assert clock.now() == 1006.0 and clock.now_ms() == 1_006_000


def test_cancelled_timers_do_not_fire_and_new_ones_inside_the_window_do() -> None:
    clock = Clock(speed=0, epoch=0.0)
    seen: list[str] = []
    cancelled = clock.call_later(1, lambda: seen.append("cancelled"))
    cancelled.cancel()

    def chain() -> None:
        seen.append("first")
        clock.call_later(1, lambda: seen.append("chained"))
        clock.call_later(10, lambda: seen.append("outside"))

    clock.call_later(2, chain)
    clock.advance(3)
    assert seen == ["first", "chained"]
    assert clock.pending == 1


def test_callback_errors_surface_from_advance() -> None:
    clock = Clock(speed=0)

    def boom() -> None:
        raise RuntimeError("boom")

    clock.call_later(1, boom)
    with pytest.raises(RuntimeError):
        clock.advance(2)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_a_running_clock_scales_real_time_and_changes_speed_without_jumps() -> None:
    mono = FakeMonotonic()
    clock = Clock(speed=10, epoch=0.0, monotonic=mono)
    fired: list[float] = []
    clock.call_at(25.0, lambda: fired.append(clock.now()))
    mono.now += 2
    assert clock.now() == 20.0
    assert clock.run_due() == 0
    mono.now += 0.5
    assert clock.run_due() == 1 and fired == [25.0]
    clock.set_speed(0)
    mono.now += 100
    assert clock.now() == 25.0 and clock.manual
    clock.set_speed(1)
    mono.now += 1
    assert clock.now() == 26.0
    clock.advance(4)
    assert clock.now() == 30.0
    assert clock.rate_time() == mono.now


async def test_the_driver_fires_timers_as_real_time_passes() -> None:
    clock = Clock(speed=1000)
    done = asyncio.Event()
    clock.call_later(2.0, done.set)  # 2 ms of real time
    driver = asyncio.create_task(clock.run())
    try:
        await asyncio.wait_for(done.wait(), timeout=5)
    finally:
        driver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver
