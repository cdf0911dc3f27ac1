"""The token bucket: burst, rate, FIFO fairness, no polling, run-time rate changes, cancellation.

Timed tests run on a virtual-time event loop (its clock jumps to the next timer when nothing is
ready), so rates are measured exactly and instantly; arithmetic tests inject a manual clock.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcilers.ratelimit import TokenBucket
from tests.support.virtual_time import jumps, now, run


class ManualClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


# -- arithmetic (manual clock, no loop) ---------------------------------------------------------


def test_a_full_bucket_serves_a_burst_then_refills_at_the_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert [bucket.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    clock.t = 0.35  # 3.5 tokens accrued
    assert [bucket.try_acquire() for _ in range(4)] == [True] * 3 + [False]
    assert bucket.tokens == pytest.approx(0.5)
    clock.t = 100.0
    assert bucket.tokens == 5.0, "never more than the burst"
    assert bucket.acquired == 8


def test_weighted_acquires_and_defaults() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate=10, clock=clock)
    assert (bucket.rate, bucket.burst) == (10, 10.0), "burst defaults to one second of rate"
    assert bucket.try_acquire(7.5)
    assert not bucket.try_acquire(3)
    assert bucket.try_acquire(2.5)
    assert TokenBucket(rate=0.2, clock=clock).burst == 1.0


def test_nonsense_is_rejected() -> None:
    clock = ManualClock()
    for rate in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            TokenBucket(rate=rate, clock=clock)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0, clock=clock)
    bucket = TokenBucket(rate=1, burst=2, clock=clock)
    with pytest.raises(ValueError):
        bucket.try_acquire(3)  # could never be satisfied
    with pytest.raises(ValueError):
        bucket.try_acquire(0)
    with pytest.raises(ValueError):
        bucket.set_rate(0)


# -- waiting (virtual loop time) ----------------------------------------------------------------


@given(
    rate=st.sampled_from([0.5, 1.0, 3.0, 10.0, 250.0]),
    burst=st.integers(1, 10),
    n=st.integers(20, 200),
    concurrent=st.booleans(),
)
@settings(max_examples=30, deadline=None)
def test_throughput_over_many_acquires_matches_the_rate(
    rate: float, burst: int, n: int, concurrent: bool
) -> None:
    async def main() -> float:
        bucket = TokenBucket(rate=rate, burst=burst)
        start = now()
        if concurrent:
            await asyncio.gather(*(bucket.acquire() for _ in range(n)))
        else:
            for _ in range(n):
                await bucket.acquire()
        assert bucket.acquired == n and bucket.waiters == 0
        return now() - start

    elapsed = run(main)
    # the burst is free; every further token costs 1 / rate
    assert elapsed == pytest.approx((n - burst) / rate, rel=1e-6, abs=2e-4)


def test_waiters_are_served_first_come_first_served() -> None:
    async def main() -> None:
        bucket = TokenBucket(rate=1, burst=3)
        assert bucket.try_acquire(3)
        order: list[str] = []

        async def take(name: str, n: float) -> None:
            await bucket.acquire(n)
            order.append(name)

        big = asyncio.create_task(take("big", 3))
        await asyncio.sleep(0)
        small = [asyncio.create_task(take(f"small{i}", 1)) for i in range(3)]
        await asyncio.sleep(0)
        assert bucket.waiters == 4
        await asyncio.sleep(1.5)  # a token is there, but "big" is first in line
        assert order == [] and not bucket.try_acquire(1)
        await asyncio.gather(big, *small)
        assert order == ["big", "small0", "small1", "small2"]
        assert now() == pytest.approx(6.0)

    run(main)


def test_waiting_arms_one_timer_instead_of_polling() -> None:
    async def main() -> None:
        bucket = TokenBucket(rate=0.1, burst=1)
        await bucket.acquire()
        before = jumps()
        await asyncio.gather(*(bucket.acquire() for _ in range(5)))
        assert now() == pytest.approx(50.0)
        assert jumps() - before <= 6, "one wake-up per grant, no polling in between"

    run(main)


def test_set_rate_applies_to_waiters_already_queued() -> None:
    async def main() -> None:
        bucket = TokenBucket(rate=0.1, burst=1)
        await bucket.acquire()
        waiter = asyncio.create_task(bucket.acquire())
        await asyncio.sleep(1.0)  # 0.1 token accrued at the old rate
        bucket.set_rate(10)
        assert bucket.rate == 10
        await waiter
        assert now() == pytest.approx(1.09)  # the missing 0.9 token at 10/s
        bucket.set_rate(0.5)
        await bucket.acquire()
        assert now() == pytest.approx(3.09)

    run(main)


def test_a_cancelled_waiter_leaves_the_line_and_does_not_cost_the_next() -> None:
    async def main() -> None:
        bucket = TokenBucket(rate=1, burst=5)
        assert bucket.try_acquire(5)
        first = asyncio.create_task(bucket.acquire(5))
        second = asyncio.create_task(bucket.acquire(1))
        await asyncio.sleep(1.0)
        first.cancel()
        await second
        assert now() == pytest.approx(1.0), "the second waiter no longer waits behind 5 tokens"
        assert first.cancelled() and bucket.waiters == 0

    run(main)


def test_a_granted_then_cancelled_waiter_gives_its_tokens_back() -> None:
    async def main() -> None:
        bucket = TokenBucket(rate=1, burst=2)
        assert bucket.try_acquire(2)
        granted = asyncio.create_task(bucket.acquire(2))
        # the bucket's timer grants the tokens at t=2; this runs in the same loop iteration,
        # after the grant and before the task resumes
        asyncio.get_running_loop().call_at(2.0 + 1e-10, granted.cancel)
        with pytest.raises(asyncio.CancelledError):
            await granted
        assert now() == pytest.approx(2.0)
        assert bucket.acquired == 1
        assert bucket.try_acquire(2), "the refunded tokens are there"

    run(main)


def test_metrics_count_waiters_and_time_spent_waiting() -> None:
    async def main() -> None:
        bucket = TokenBucket(rate=2, burst=1)
        await bucket.acquire()
        tasks = [asyncio.create_task(bucket.acquire()) for _ in range(4)]
        await asyncio.sleep(0)
        assert bucket.waiters == 4
        await asyncio.gather(*tasks)
        assert bucket.waiters == 0 and bucket.acquired == 5
        # they waited 0.5, 1.0, 1.5 and 2.0 s
        assert bucket.waited_seconds == pytest.approx(5.0)

    run(main)


def test_an_injected_clock_that_runs_at_loop_speed_works_for_waiting() -> None:
    async def main() -> None:
        bucket = TokenBucket(rate=4, burst=1, clock=lambda: now() + 1e6)
        for _ in range(9):
            await bucket.acquire()
        assert now() == pytest.approx(2.0)

    run(main)


async def test_on_a_real_loop_acquires_are_spaced_by_the_rate() -> None:
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(rate=200, burst=1)
    start = loop.time()
    await asyncio.wait_for(asyncio.gather(*(bucket.acquire() for _ in range(4))), 5)
    assert loop.time() - start >= 3 / 200 - 1e-3


@pytest.mark.parametrize("limit", [1.0, 2.0, 5.0, 10.0, 200.0])
def test_provider_limiter_never_lets_a_one_second_window_exceed_the_limit(limit: float) -> None:
    """A full bucket plus a second's refill would be ``burst + rate`` calls in one window: the
    provider's limiter holds one token and runs one call per second under the limit."""
    from reconcilers.ratelimit import provider_limiter

    now = [0.0]
    bucket = provider_limiter(limit, clock=lambda: now[0])
    admitted: list[float] = []
    for step in range(5_000):  # five seconds of greedy demand, every millisecond
        now[0] = step / 1000
        while bucket.try_acquire():
            admitted.append(now[0])
    for start in (t / 100 for t in range(400)):  # sliding windows, 10 ms apart
        assert sum(1 for t in admitted if start <= t < start + 1) <= limit
    assert len(admitted) >= (limit - 1 if limit >= 2 else limit / 2) * 4


def test_the_provider_bucket_catches_up_a_late_call_above_50_per_second() -> None:
    """Below 100 calls/s it holds one token (a late wake-up loses that token's time); from
    100/s it holds one more per 50/s and runs that much slower, so the window bound holds."""
    from reconcilers.ratelimit import limiter_burst, provider_limiter, safe_rate

    assert [limiter_burst(x) for x in (1, 10, 99, 100, 200)] == [1, 1, 1, 2, 4]
    assert [safe_rate(x) for x in (1, 10, 100, 200)] == [0.5, 9, 98, 196]
    now = [0.0]
    bucket = provider_limiter(200, clock=lambda: now[0])
    while bucket.try_acquire():
        pass
    now[0] = 0.02  # the loop comes back 20 ms late: 3.92 calls' worth accrued, none lost
    assert sum(1 for _ in iter(bucket.try_acquire, False)) == 3
    now[0] = 0.0205  # the 0.92 was kept: the fourth is due 0.4 ms later, not 5 ms
    assert bucket.try_acquire()
