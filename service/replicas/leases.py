"""The lease table's SQL: heartbeats, renewals, acquisitions and releases, on the database clock.

Every statement locks lease rows in shard order (``ORDER BY shard FOR UPDATE``), as the store's
fence checks do (``FOR SHARE``): transactions that lock rows in one order cannot deadlock.

Every time comparison is made by PostgreSQL against its own ``now()``: the replicas' clocks may
disagree, the database's is the one all of them see. ``now()`` is the transaction's start, so a
heartbeat and the renewals written with it expire at the same instant, which is what lets the
other replicas drop a dead one from the membership exactly when its leases lapse.

The token of a shard grows by one at every acquisition (so at every change of owner); the
store's append checks ``(shard, token, owner)`` against this table in its own transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Member:
    """A live replica, as its own heartbeat describes it."""

    id: str
    started_at: datetime
    heartbeat_at: datetime
    info: dict[str, Any]


@dataclass(frozen=True)
class Lease:
    """One row of the lease table, with its time left by the database's clock."""

    shard: int
    owner: str | None
    token: int
    expires_at: datetime | None
    remaining: float  # seconds until it expires (<= 0: expired or never held)

    @property
    def valid(self) -> bool:
        return self.owner is not None and self.remaining > 0


@dataclass(frozen=True)
class Acquired:
    shard: int
    token: int
    previous: str | None  # the owner before us: a takeover when set (its lease had expired)


@dataclass(frozen=True)
class Tick:
    """What one heartbeat transaction saw: the leases it renewed, the live replicas, the table."""

    renewed: dict[int, int]  # shard -> token
    members: list[Member]
    leases: dict[int, Lease]


_LEASES = """
SELECT shard, owner, token, expires_at,
       coalesce(extract(epoch FROM expires_at - now()), 0)::float8 AS remaining
FROM leases ORDER BY shard
"""


class LeaseTable:
    """The SQL of membership and leases on one connection pool."""

    def __init__(self, pool: asyncpg.Pool, lease_seconds: float) -> None:
        self.pool = pool
        self.lease_seconds = lease_seconds

    async def create_rows(self, shards: int) -> None:
        """One row per shard, unowned (idempotent: every replica does it at start)."""
        await self.pool.execute(
            "INSERT INTO leases (shard) SELECT generate_series(0, $1::int - 1) "
            "ON CONFLICT (shard) DO NOTHING",
            shards,
        )

    async def heartbeat(self, me: str, info: Mapping[str, Any], held: Mapping[int, int]) -> Tick:
        """Say we are alive and renew the leases we hold (matched by token: one taken over
        and given back has a new token and is not ours to renew); read the membership and
        the whole table in the same transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO replicas (id, started_at, heartbeat_at, info) "
                "VALUES ($1, now(), now(), $2::jsonb) "
                "ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), info = EXCLUDED.info",
                me,
                json.dumps(dict(info)),
            )
            rows = await conn.fetch(
                "WITH mine AS (SELECT l.shard FROM leases AS l "
                "  JOIN unnest($3::int[], $4::bigint[]) AS h(shard, token) "
                "  ON l.shard = h.shard AND l.token = h.token "
                "  WHERE l.owner = $1 ORDER BY l.shard FOR UPDATE OF l) "
                "UPDATE leases AS l SET expires_at = now() + make_interval(secs => $2) "
                "FROM mine WHERE l.shard = mine.shard "
                "RETURNING l.shard, l.token",
                me,
                self.lease_seconds,
                list(held),
                list(held.values()),
            )
            members = await conn.fetch(
                "SELECT id, started_at, heartbeat_at, info FROM replicas "
                "WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY id",
                self.lease_seconds,
            )
            table = await conn.fetch(_LEASES)
        return Tick(
            renewed={r["shard"]: r["token"] for r in rows},
            members=[_member(r) for r in members],
            leases={r["shard"]: _lease(r) for r in table},
        )

    async def acquire(self, me: str, shards: Sequence[int]) -> list[Acquired]:
        """Take the shards among ``shards`` that nobody holds or whose lease has expired; the
        token grows by one. Two replicas racing for a shard: the row lock serialises them and
        the second finds it held."""
        if not shards:
            return []
        rows = await self.pool.fetch(
            "UPDATE leases AS l SET owner = $1, token = l.token + 1, "
            "expires_at = now() + make_interval(secs => $2) "
            "FROM (SELECT shard, owner FROM leases WHERE shard = ANY($3::int[]) "
            "      ORDER BY shard FOR UPDATE) AS before "
            "WHERE l.shard = before.shard AND (l.owner IS NULL OR l.owner = $1 "
            "      OR l.expires_at IS NULL OR l.expires_at <= now()) "
            "RETURNING l.shard, l.token, before.owner AS previous",
            me,
            self.lease_seconds,
            list(shards),
        )
        return [Acquired(r["shard"], r["token"], r["previous"]) for r in rows]

    async def release(self, me: str, held: Mapping[int, int]) -> list[int]:
        """Give shards back (still ours by token): free at once for their rightful owner."""
        if not held:
            return []
        rows = await self.pool.fetch(
            "WITH mine AS (SELECT l.shard FROM leases AS l "
            "  JOIN unnest($2::int[], $3::bigint[]) AS h(shard, token) "
            "  ON l.shard = h.shard AND l.token = h.token "
            "  WHERE l.owner = $1 ORDER BY l.shard FOR UPDATE OF l) "
            "UPDATE leases AS l SET owner = NULL, expires_at = NULL "
            "FROM mine WHERE l.shard = mine.shard "
            "RETURNING l.shard",
            me,
            list(held),
            list(held.values()),
        )
        return [r["shard"] for r in rows]

    async def leave(self, me: str) -> None:
        """Drop out of the membership (a graceful stop): the others rebalance at once."""
        await self.pool.execute("DELETE FROM replicas WHERE id = $1", me)


async def read_state(conn: asyncpg.Connection, lease_seconds: float) -> Tick:
    """The membership and the lease table, for ``recctl status`` (no heartbeat written)."""
    members = await conn.fetch(
        "SELECT id, started_at, heartbeat_at, info FROM replicas "
        "WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY id",
        lease_seconds,
    )
    table = await conn.fetch(_LEASES)
    return Tick({}, [_member(r) for r in members], {r["shard"]: _lease(r) for r in table})


def _member(row: asyncpg.Record) -> Member:
    info = row["info"]
    return Member(
        row["id"],
        row["started_at"],
        row["heartbeat_at"],
        json.loads(info) if isinstance(info, str) else dict(info or {}),
    )


def _lease(row: asyncpg.Record) -> Lease:
    return Lease(row["shard"], row["owner"], row["token"], row["expires_at"], row["remaining"])
