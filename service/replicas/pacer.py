"""The provider's rate limit shared by every replica: leased shares of it, in PostgreSQL.

Agora counts requests per App ID (Cloudflare per account), whatever process sends them. Each
replica paces its own calls with a local token bucket (:class:`~reconcilers.ratelimit.
TokenBucket`), at a **share** of the limit it holds on a short lease in the ``rate_shares``
table. Twice a second it renews the lease and re-divides the limit by demand (calls made,
calls waiting and work queued), under an advisory lock per account, so that

- the shares of unexpired leases, plus each bucket's burst, never add up to more than the
  limit (a grant is at most what the others' unexpired shares leave free), and
- a replica with all the work gets nearly all of the limit within a second or two; an idle
  one keeps a small share (:data:`IDLE_RATE`) so its first call does not wait for a renewal.

A token is taken when the call leaves, on the replica's own clock: a replica whose event loop
runs late sends late, never more than its bucket allows (the per-call reservation this replaced
bunched a lagging replica's late calls with the others' on-time ones, and had to give up slots
to stay within the limit: 1.17x the floor at 2,000 rooms). A replica stops sending when its
lease runs out on its own monotonic clock (paused past it, or cut off from the database); the
others take its share only after the database's clock says the lease expired, which is later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from reconcilers.ratelimit import TokenBucket, limiter_burst

log = structlog.get_logger(__name__)

#: How often a replica renews its share and re-divides the limit.
RENEW_SECONDS: Final = 0.5
#: How long a share is held without renewal (a dead replica's share is free after this).
SHARE_SECONDS: Final = 2.0
#: The share a replica with no calls to make keeps, in calls a second.
IDLE_RATE: Final = 1.0


@dataclass(frozen=True)
class Peer:
    """Another replica's unexpired share of one account's limit."""

    rate: float
    demand: float


def budget(limit: float, replicas: int) -> float:
    """The rate the replicas' shares may add up to: the limit less every bucket's burst (a
    bucket holding ``b`` tokens admits ``b + rate`` calls in any second)."""
    return max(0.0, limit - replicas * limiter_burst(limit))


def fair_share(demand: float, peers: Sequence[Peer], limit: float) -> float:
    """This replica's part of :func:`budget` by demand: idle replicas keep :data:`IDLE_RATE`,
    the others divide what is left in proportion to their demand (equally if nobody has any)."""
    total = budget(limit, len(peers) + 1)
    demands = [demand, *(p.demand for p in peers)]
    busy = [d for d in demands if d > 0]
    if not busy:
        return total / len(demands)
    idle_rate = min(IDLE_RATE, total / len(demands))
    if demand <= 0:
        return idle_rate
    return (total - idle_rate * (len(demands) - len(busy))) * demand / sum(busy)


def grant(demand: float, peers: Sequence[Peer], limit: float) -> float:
    """The share this replica may take now: its fair share, but never more than the others'
    unexpired shares leave free (they give back their excess at their own next renewal)."""
    free = budget(limit, len(peers) + 1) - sum(p.rate for p in peers)
    return max(0.0, min(fair_share(demand, peers, limit), free))


class PacerMetrics:
    """One set for every account's pacer, labelled by provider (an account id stays out)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.share = Gauge(
            "provider_rate_share_per_second",
            "This replica's share of the provider's rate limit, in calls a second",
            ["provider"],
            registry=registry,
        )
        self.failures = Counter(
            "provider_rate_share_renewal_failures_total",
            "Renewals of the rate share that failed (it lapses 2 s after the last good one)",
            ["provider"],
            registry=registry,
        )


class SharedPacer:
    """``acquire()`` is the ``before_request`` hook of one provider account's client;
    ``async with pacer:`` holds the share (renewed in the background, released at the end)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        account: str,
        limit: float,
        replica: str,
        *,
        metrics: PacerMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not limit > 0:
            raise ValueError(f"limit must be > 0, got {limit!r}")
        self.pool = pool
        self.account = account
        self.limit = limit
        self.replica = replica
        self.clock = clock
        self.provider = account.split(":", 1)[0]
        self.metrics = metrics
        self.rate = 0.0  # the share held now, in calls a second
        self.deadline = 0.0  # when it runs out, on ``clock``
        self.renewals = 0
        self.acquired = 0
        self._bucket = TokenBucket(1.0, burst=float(limiter_burst(limit)))
        self._made = 0  # calls since the last renewal: with those waiting, the demand
        self._since = clock()
        self._waiting = 0
        self._held = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Work queued behind the calls already waiting (the controller's ready keys, most of
        #: which will call): without it, replicas whose workers all wait look alike however
        #: long their queues, and the one with the most rooms finishes last, alone.
        self.backlog: Callable[[], int] = lambda: 0

    @property
    def valid(self) -> bool:
        return self.rate > 0 and self.clock() < self.deadline

    def describe(self) -> dict[str, object]:
        """For ``/readyz``: the share this replica holds of the provider's limit."""
        return {
            "provider": self.provider,
            "limit_per_s": self.limit,
            "share_per_s": round(self.rate, 3),
            "valid": self.valid,
            "renewals": self.renewals,
            "calls": self.acquired,
        }

    async def __aenter__(self) -> SharedPacer:
        await self.renew()
        self._task = asyncio.create_task(self._renewing(), name=f"pacer {self.account}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.rate = 0.0
        with contextlib.suppress(Exception):  # it expires anyway; a failed release costs 2 s
            await self.pool.execute(
                "DELETE FROM rate_shares WHERE account = $1 AND replica = $2",
                self.account,
                self.replica,
            )

    async def acquire(self) -> None:
        """Wait for a token of this replica's share; never send on a lapsed share."""
        self._waiting += 1
        try:
            while True:
                if not self.valid:
                    self._held.clear()
                    await self._held.wait()
                    continue
                await self._bucket.acquire()
                if self.valid:  # the share may have lapsed while we queued
                    break
        finally:
            self._waiting -= 1
        self._made += 1
        self.acquired += 1

    async def renew(self) -> None:
        """Renew this replica's share and re-divide the limit (one transaction)."""
        started = self.clock()
        # Calls wanted soon, roughly: the recent rate, those waiting, and the work queued.
        recent = self._made / max(RENEW_SECONDS, started - self._since)
        demand = recent + self._waiting + self.backlog()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('rate_shares'), hashtext($1))",
                self.account,
            )
            rows = await conn.fetch(
                "SELECT rate, demand FROM rate_shares WHERE account = $1 AND replica <> $2 "
                "AND expires_at > clock_timestamp()",
                self.account,
                self.replica,
            )
            rate = grant(demand, [Peer(r["rate"], r["demand"]) for r in rows], self.limit)
            # The lease runs from before the upsert that sets its expiry on the database's
            # clock: never later here than there, however long the lock took to get.
            granted_at = self.clock()
            await conn.execute(
                "INSERT INTO rate_shares (account, replica, rate, demand, expires_at) "
                "VALUES ($1, $2, $3, $4, clock_timestamp() + make_interval(secs => $5)) "
                "ON CONFLICT (account, replica) DO UPDATE SET rate = excluded.rate, "
                "demand = excluded.demand, expires_at = excluded.expires_at",
                self.account,
                self.replica,
                rate,
                demand,
                SHARE_SECONDS,
            )
        self._made, self._since = 0, started
        self.renewals += 1
        # Lowered at once; valid until SHARE_SECONDS after the upsert was sent, on our clock
        # (the database's expiry, which the others go by, comes later).
        self.rate, self.deadline = rate, granted_at + SHARE_SECONDS
        if self.metrics is not None:
            self.metrics.share.labels(self.provider).set(rate)
        if rate > 0:
            self._bucket.set_rate(rate)
            self._held.set()

    async def _renewing(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)  # a period, not a synchronisation
            try:
                await self.renew()
            except Exception as exc:  # never let the renewals stop: the share would lapse
                # The share lapses on its own at its deadline; the next renewal may succeed.
                log.warning("rate share not renewed", provider=self.provider, error=str(exc))
                if self.metrics is not None:
                    self.metrics.failures.labels(self.provider).inc()
