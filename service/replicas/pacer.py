"""The provider's rate limit shared by every replica: one pacer row per account, in PostgreSQL.

Agora counts requests per App ID (Cloudflare per account), whatever process sends them. Each
call first reserves the next free slot of the account's schedule in one ``UPDATE`` (slots
``1/rate`` apart on the database's clock, never two in one slot, whichever replica asks) and
sleeps until its slot. Unlike shares of the limit split between replicas, it wastes nothing
when one replica has all the work and needs no agreement on who is live.

Slots ``1/rate`` apart put at most ``floor(rate) + 1`` calls in any one-second window *if each
call leaves on its slot*. A replica whose event loop lags sends its calls late, bunched with
the others' on-time ones: measured at the emulator, 105 calls in one second for a limit of 100
with three replicas on two busy cores. So a call that wakes more than :data:`LATE_SECONDS`
after its slot gives the slot up and takes a new one (at most :data:`MAX_RETAKES` times, then
it goes: a loop that is always late must still make progress), and the rate leaves room for
that lateness: ``(limit - 1) / (1 + LATE_SECONDS)`` (:func:`pacer_rate`), so that even calls
``LATE_SECONDS`` late stay within the limit in any window.

A reservation whose call is abandoned leaves its slot unused: the schedule only gets sparser.
"""

from __future__ import annotations

import asyncio
from typing import Final

import asyncpg

#: How late after its slot a call may still leave (loop lag, the answer's trip back).
LATE_SECONDS: Final = 0.025
#: Slots a call may give up for being late before it goes anyway.
MAX_RETAKES: Final = 3


def pacer_rate(limit: float) -> float:
    """The schedule's rate for a provider's ``limit`` per second (see the module's doc)."""
    base = limit - 1 if limit >= 2 else limit / 2
    return base / (1 + LATE_SECONDS)

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
        self.retaken = 0  # slots given up because the call woke too late for them
        self.late = 0  # calls that went late anyway (MAX_RETAKES reached)

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
        loop = asyncio.get_running_loop()
        for attempt in range(MAX_RETAKES + 1):
            wait = await self.reserve()
            due = loop.time() + wait
            if wait > 0:
                self.waited_seconds += wait
                await asyncio.sleep(wait)  # pacing to our slot, not a synchronisation
            if loop.time() - due <= LATE_SECONDS:
                break
            if attempt == MAX_RETAKES:
                self.late += 1
                break
            self.retaken += 1
        self.acquired += 1
