"""Leases on a real PostgreSQL: acquisition, rebalancing, takeover after expiry, the token
growing at every change of owner, and the replica's own (earlier) end of a lease.

The database's clock cannot be moved, so the leases here are short (1 s) and the tests wait
for the database to say they expired; the replica's local clock is injected where it matters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from service.replicas.ownership import NotOwner, check_current_pass
from service.replicas.replica import Replica
from service.replicas.shards import SHARDS, shard_of
from service.store.postgres.schema import migrate

LEASE = 1.0


@contextlib.asynccontextmanager
async def database(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        yield pool
    finally:
        await pool.close()


def replica(pool: asyncpg.Pool, dsn: str, name: str, lease: float = LEASE) -> Replica:
    return Replica(pool, dsn, lease, CollectorRegistry(), id=name)


async def tokens(pool: asyncpg.Pool) -> dict[int, tuple[str | None, int]]:
    rows = await pool.fetch("SELECT shard, owner, token FROM leases")
    return {r["shard"]: (r["owner"], r["token"]) for r in rows}


def counter(r: Replica, name: str, **labels: str) -> float:
    value = r.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_a_lone_replica_takes_every_shard_with_token_one(postgres_db: str) -> None:
    async with database(postgres_db) as pool:
        a = replica(pool, postgres_db, "a")
        await a.start()
        try:
            assert a.owned() == list(range(SHARDS))
            assert set((await tokens(pool)).values()) == {("a", 1)}
            assert counter(a, "lease_acquisitions_total", kind="free") == SHARDS
            assert a.owns("acme/room-1")
        finally:
            await a.stop()
        assert set((await tokens(pool)).values()) == {(None, 1)}  # given back on stop
        assert await pool.fetchval("SELECT count(*) FROM replicas") == 0


async def test_a_joining_replica_gets_its_share_after_the_holder_releases(
    postgres_db: str,
) -> None:
    async with database(postgres_db) as pool:
        a, b = replica(pool, postgres_db, "a", 30), replica(pool, postgres_db, "b", 30)
        await a.start()
        await b.start()  # sees a live and every lease held: takes nothing yet
        assert b.owned() == []
        await a.tick()  # a sees b: releases b's share
        await b.tick()  # b takes it, token 2
        table = await tokens(pool)
        assert set(a.owned()) | set(b.owned()) == set(range(SHARDS))
        assert not set(a.owned()) & set(b.owned())
        assert 10 <= len(b.owned()) <= 54
        for shard in b.owned():
            assert table[shard] == ("b", 2)
        for shard in a.owned():
            assert table[shard] == ("a", 1)
        assert counter(a, "lease_losses_total", reason="released") == len(b.owned())
        await a.stop()
        await b.tick()  # a left: b holds everything without waiting for a TTL
        assert b.owned() == list(range(SHARDS))
        await b.stop()


async def test_a_dead_replicas_shards_are_taken_over_after_expiry_with_a_new_token(
    postgres_db: str,
) -> None:
    async with database(postgres_db) as pool:
        a = replica(pool, postgres_db, "a")
        await a.start()
        b = replica(pool, postgres_db, "b")
        await b.start()
        await a.tick()
        await b.tick()
        a_shards = a.owned()
        before = await tokens(pool)
        # a dies: it never ticks again. b's tick says when to look next: just after a's leases
        # (and heartbeat) lapse on the database's clock.
        for _ in range(100):
            if set(b.owned()) == set(range(SHARDS)):
                break
            await asyncio.sleep(await b.tick())  # the delay the replica itself would wait
        after = await tokens(pool)
        for shard in a_shards:
            assert after[shard] == ("b", before[shard][1] + 1)
        assert counter(b, "lease_takeovers_total") == len(a_shards)
        # a wakes up (a paused process): its own clock ended the leases already...
        assert not any(a.owns(k) for k in ("acme/room-1", "acme/room-2", "acme/room-3"))
        # ...and its next heartbeat finds them taken: nothing of b's is renewed by a
        await a.tick()
        assert counter(a, "lease_losses_total", reason="taken") == len(a_shards)
        assert await tokens(pool) == after  # a is live again, but b holds them all
        await b.stop()
        await a.stop()


async def test_two_replicas_racing_for_a_free_shard_get_it_once(postgres_db: str) -> None:
    async with database(postgres_db) as pool:
        a, b = replica(pool, postgres_db, "a"), replica(pool, postgres_db, "b")
        await a.table.create_rows(SHARDS)
        got_a, got_b = await asyncio.gather(
            a.table.acquire("a", list(range(SHARDS))), b.table.acquire("b", list(range(SHARDS)))
        )
        assert len(got_a) + len(got_b) == SHARDS
        assert not {x.shard for x in got_a} & {x.shard for x in got_b}


async def test_a_pass_stops_when_the_replica_clock_ends_the_lease(postgres_db: str) -> None:
    """The local end of a lease comes before the database's: a pass in flight is refused at
    its next provider call, and a new pass is not started."""
    now = [0.0]
    async with database(postgres_db) as pool:
        a = Replica(pool, postgres_db, 30, CollectorRegistry(), id="a", clock=lambda: now[0])
        await a.start()
        key = "acme/room-1"
        with a.acting_on(key) as fence:
            assert fence.shard == shard_of(key) and fence.token == 1 and fence.owner == "a"
            check_current_pass()  # still ours
            now[0] += 30 * 0.8  # SAFETY of the TTL after the renewal was sent
            with pytest.raises(NotOwner):
                check_current_pass()
        assert not a.owns(key)
        with pytest.raises(NotOwner), a.acting_on(key):
            pass
        now[0] = 0.0
        await a.tick()  # renewed: ours again, same token
        now[0] = 1.0
        assert a.owns(key)
        await a.stop()
