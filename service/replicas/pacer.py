"""The provider's rate limit shared by every replica: one pacer row per account, in PostgreSQL.

Agora counts requests per App ID (Cloudflare per account), whatever process sends them. Each
call first reserves the next free slot of the account's schedule in one ``UPDATE`` (slots
``1/rate`` apart on the database's clock, never two in one slot, whichever replica asks) and
sleeps until its slot. Slots ``1/rate`` apart put at most ``floor(rate) + 1`` calls in any
one-second window, so ``rate`` is :func:`service.wiring.safe_rate` of the limit, as for the
single process's token bucket; unlike shares of the limit split between replicas, it wastes
nothing when one replica has all the work and needs no agreement on who is live.

A reservation whose call is abandoned leaves its slot unused: the schedule only gets sparser.
"""

from __future__ import annotations

import asyncio

import asyncpg

_CREATE = """
CREATE TABLE IF NOT EXISTS rate_budget (
    account text PRIMARY KEY,
    next_at timestamptz NOT NULL DEFAULT now()
)
"""


class SharedPacer:
    """``acquire()`` is the ``before_request`` hook of one provider account's client."""

    def __init__(self, pool: asyncpg.Pool, account: str, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        self.pool = pool
        self.account = account
        self.spacing = 1.0 / rate
        self.acquired = 0
        self.waited_seconds = 0.0

    async def setup(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('rate_budget'))")
            await conn.execute(_CREATE)
            await conn.execute(
                "INSERT INTO rate_budget (account) VALUES ($1) ON CONFLICT DO NOTHING",
                self.account,
            )

    async def reserve(self) -> float:
        """Take the next slot; return the seconds until it (0 when it is now)."""
        wait: float = await self.pool.fetchval(
            "UPDATE rate_budget "
            "SET next_at = greatest(next_at, clock_timestamp()) + make_interval(secs => $2) "
            "WHERE account = $1 "
            "RETURNING extract(epoch FROM next_at - clock_timestamp())::float8 - $2",
            self.account,
            self.spacing,
        )
        return max(0.0, wait)

    async def acquire(self) -> None:
        wait = await self.reserve()
        self.acquired += 1
        if wait > 0:
            self.waited_seconds += wait
            await asyncio.sleep(wait)  # pacing to our slot, not a synchronisation
