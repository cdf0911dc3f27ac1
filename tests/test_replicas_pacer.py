"""The provider's limit shared through PostgreSQL as leased shares: the shares never add up to
more than the limit allows, whatever the demands; three "replicas" (three pools) on one account
never put more than the limit in any one-second window; one replica with all the work gets
nearly all of it; a replica whose share lapsed sends nothing until it renews."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from reconcilers.ratelimit import limiter_burst
from service.replicas.pacer import (
    IDLE_RATE,
    RENEW_SECONDS,
    SHARE_SECONDS,
    PacerMetrics,
    Peer,
    SharedPacer,
    budget,
    fair_share,
    grant,
)
from service.store.postgres.schema import migrate

LIMIT = 20.0

demands = st.floats(min_value=0, max_value=1e4, allow_nan=False)


@given(st.lists(demands, min_size=1, max_size=6), st.sampled_from([2.0, 10.0, 100.0, 200.0]))
def test_fair_shares_add_up_to_the_budget_at_most(all_demands: list[float], limit: float) -> None:
    n = len(all_demands)
    shares = [
        fair_share(d, [Peer(0.0, o) for j, o in enumerate(all_demands) if j != i], limit)
        for i, d in enumerate(all_demands)
    ]
    assert sum(shares) <= budget(limit, n) + 1e-6
    assert all(s >= 0 for s in shares)


@given(st.lists(st.tuples(demands, demands), min_size=0, max_size=5), demands)
def test_a_grant_never_takes_what_the_others_hold(
    peers: list[tuple[float, float]], d: float
) -> None:
    held = [Peer(rate, demand) for rate, demand in peers]
    mine = grant(d, held, 100.0)
    assert mine >= 0
    # what the peers hold (perhaps more than their fair share, until they renew) plus this
    # grant stays within the budget, unless the peers alone already exceed it (then: nothing)
    assert mine == 0 or sum(p.rate for p in held) + mine <= budget(100.0, len(held) + 1) + 1e-6


def test_a_busy_replica_gets_all_but_the_idle_ones_crumbs() -> None:
    idle = [Peer(IDLE_RATE, 0.0), Peer(IDLE_RATE, 0.0)]
    assert fair_share(500.0, idle, 200.0) == budget(200.0, 3) - 2 * IDLE_RATE
    assert fair_share(0.0, [Peer(50.0, 80.0)], 200.0) == IDLE_RATE
    equal = fair_share(10.0, [Peer(0.0, 10.0), Peer(0.0, 10.0)], 200.0)
    assert equal == pytest.approx(budget(200.0, 3) / 3)
    assert fair_share(0.0, [], 200.0) == budget(200.0, 1) == 200.0 - limiter_burst(200.0)


def busiest_second(times: list[float]) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def _pools(dsn: str, n: int) -> list[asyncpg.Pool]:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return [await asyncpg.create_pool(dsn, min_size=1, max_size=4) for _ in range(n)]


async def test_three_pacers_on_one_account_share_one_limit(postgres_db: str) -> None:
    pools = await _pools(postgres_db, 3)
    try:
        pacers = [SharedPacer(pool, "agora:app", LIMIT, f"r{n}") for n, pool in enumerate(pools)]
        for pacer in pacers:
            await pacer.__aenter__()
        granted: list[float] = []

        async def call(pacer: SharedPacer) -> None:
            await pacer.acquire()
            granted.append(time.monotonic())

        started = time.monotonic()
        await asyncio.gather(*(call(pacers[n % 3]) for n in range(60)))
        elapsed = time.monotonic() - started
        assert busiest_second(granted) <= LIMIT
        # the three together, not three times the limit: 60 calls need about 3 s or more
        assert elapsed >= 60 / LIMIT - 1.0
        assert sum(p.acquired for p in pacers) == 60

        # one replica with all the work: the others idle at IDLE_RATE, it gets the rest
        alone: list[float] = []
        calls = 60
        started = time.monotonic()
        for _ in range(calls):
            await pacers[0].acquire()
            alone.append(time.monotonic())
        whole = budget(LIMIT, 3) - 2 * IDLE_RATE
        # at most a renewal or two at a lower share before it has grown to the whole
        assert time.monotonic() - started <= calls / whole + 4 * RENEW_SECONDS
        assert busiest_second(alone) <= LIMIT
        for pacer in pacers:
            await pacer.__aexit__(None, None, None)
        left = await pools[0].fetchval("SELECT count(*) FROM rate_shares")
        assert left == 0  # shares released on the way out
    finally:
        for pool in pools:
            await pool.close()


async def test_a_lapsed_share_sends_nothing_until_renewed(postgres_db: str) -> None:
    (pool,) = await _pools(postgres_db, 1)
    now = [0.0]
    try:
        async with SharedPacer(pool, "agora:app", LIMIT, "r0", clock=lambda: now[0]) as pacer:
            await pacer.acquire()
            renewals = pacer.renewals
            now[0] += SHARE_SECONDS + 1  # paused past its lease (SIGSTOP, a long GC)
            waiting = asyncio.create_task(pacer.acquire())
            await asyncio.sleep(0)  # it finds the share lapsed and waits for a renewal
            assert not waiting.done()
            await asyncio.wait_for(waiting, timeout=RENEW_SECONDS * 4)
            assert pacer.renewals > renewals  # it went only once the share was renewed
    finally:
        await pool.close()


async def test_a_dead_replicas_share_is_free_after_it_expires(postgres_db: str) -> None:
    (pool,) = await _pools(postgres_db, 1)
    try:
        await pool.execute(
            "INSERT INTO rate_shares (account, replica, rate, demand, expires_at) "
            "VALUES ('agora:app', 'dead', $1, 100, clock_timestamp() + make_interval(secs => 1))",
            budget(LIMIT, 2),
        )
        registry = CollectorRegistry()
        shares = PacerMetrics(registry)
        async with SharedPacer(pool, "agora:app", LIMIT, "r0", metrics=shares) as pacer:
            assert pacer.rate == 0  # all of it held by the other, until its share expires
            assert not pacer.describe()["valid"]
            await asyncio.wait_for(pacer.acquire(), timeout=1 + 3 * RENEW_SECONDS)
            assert pacer.rate == budget(LIMIT, 1)
            assert pacer.describe()["share_per_s"] == budget(LIMIT, 1)
            gauge = registry.get_sample_value(
                "provider_rate_share_per_second", {"provider": "agora"}
            )
            assert gauge == budget(LIMIT, 1)
    finally:
        await pool.close()


async def test_the_replica_with_more_work_queued_gets_more_of_the_limit(postgres_db: str) -> None:
    pools = await _pools(postgres_db, 2)
    try:
        busy = SharedPacer(pools[0], "agora:app", LIMIT, "busy")
        light = SharedPacer(pools[1], "agora:app", LIMIT, "light")
        busy.backlog, light.backlog = (lambda: 900), (lambda: 100)
        async with busy, light:
            for _ in range(3):  # each renewal lowers the one and lets the other rise
                await light.renew()
                await busy.renew()
            assert busy.rate == pytest.approx(budget(LIMIT, 2) * 0.9, rel=0.01)
            assert light.rate == pytest.approx(budget(LIMIT, 2) * 0.1, rel=0.01)
    finally:
        for pool in pools:
            await pool.close()


async def test_renewals_go_on_after_an_unexpected_error(
    postgres_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pool,) = await _pools(postgres_db, 1)
    try:
        async with SharedPacer(pool, "agora:app", LIMIT, "r0") as pacer:
            real = SharedPacer.renew
            failures: list[int] = []
            renewed = asyncio.Event()

            async def flaky(self: SharedPacer) -> None:
                if not failures:
                    failures.append(1)
                    raise RuntimeError("connection went away oddly")
                await real(self)
                renewed.set()

            monkeypatch.setattr(SharedPacer, "renew", flaky)
            await asyncio.wait_for(renewed.wait(), timeout=6 * RENEW_SECONDS)
            assert failures and pacer.valid
    finally:
        await pool.close()
