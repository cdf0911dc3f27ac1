"""The provider pacer shared through PostgreSQL: three "replicas" (three pools) drawing on one
account never put more than the limit in any one-second window, and one of them alone gets
the whole rate."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from service.replicas.pacer import LATE_SECONDS, SharedPacer, pacer_rate

LIMIT = 20.0


def busiest_second(times: list[float]) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def test_three_pacers_on_one_account_share_one_limit(postgres_db: str) -> None:
    pools = [await asyncpg.create_pool(postgres_db, min_size=1, max_size=4) for _ in range(3)]
    try:
        pacers = [SharedPacer(pool, "agora:app", pacer_rate(LIMIT)) for pool in pools]
        for pacer in pacers:
            await pacer.setup()
        granted: list[float] = []

        async def call(pacer: SharedPacer) -> None:
            await pacer.acquire()
            granted.append(time.monotonic())

        started = time.monotonic()
        await asyncio.gather(*(call(pacers[n % 3]) for n in range(60)))
        elapsed = time.monotonic() - started
        assert busiest_second(granted) <= LIMIT
        # 60 calls at ~18.5/s take about 3.2 s: the three together, not three times the rate
        assert elapsed >= 59 / pacer_rate(LIMIT) - 0.1
        assert sum(p.acquired for p in pacers) == 60

        alone: list[float] = []
        started = time.monotonic()
        for _ in range(20):
            await pacers[0].acquire()
            alone.append(time.monotonic())
        # one replica with all the work gets the whole rate (within the loop's lateness)
        assert time.monotonic() - started <= 20 / pacer_rate(LIMIT) + 20 * LATE_SECONDS
    finally:
        for pool in pools:
            await pool.close()


def test_the_rate_leaves_room_for_a_late_call() -> None:
    for limit in (2.0, 10.0, 100.0, 200.0):
        rate = pacer_rate(limit)
        # slots 1/rate apart, each call up to LATE_SECONDS late: a window sees at most this many
        assert int(rate * (1 + LATE_SECONDS)) + 1 <= limit
    assert pacer_rate(1.0) < 1.0
