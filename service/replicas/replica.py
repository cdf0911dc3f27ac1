"""This replica: its identity and heartbeat, the shard leases it holds, and the wake channel.

One loop does everything that touches the lease table, on the database's clock: a heartbeat
transaction (alive, renew what we hold, read the membership and the table), then releases of
shards that belong to another replica now (after their passes in flight end), then
acquisitions of shards that are ours and free. It runs every third of ``LEASE_SECONDS``, and
also just after the soonest lease held by someone else would expire (a dead replica's shards
are taken over at once), or when another replica says it released something.

The replica's own view of a lease ends earlier than the database's (``SAFETY`` of the TTL,
counted from before the renewal was sent), so a replica whose process was paused stops acting
before anybody else may start; the fence on every intent is what makes that safe even when it
does not (a pause between the check and the call).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from reconcilers.events import Fence
from service.replicas.leases import Lease, LeaseTable, Member
from service.replicas.ownership import NotOwner, pass_check
from service.replicas.shards import SHARDS, shard_of, wanted_by

log = structlog.get_logger("replicas")

#: The part of the lease a replica trusts itself with, from before its renewal was sent.
SAFETY: Final = 0.8
#: How long a release waits for the shard's passes in flight (their appends are fenced anyway).
DRAIN_SECONDS: Final = 2.0
#: After a lease held by someone else expires, look this much later (its holder is dead).
EXPIRY_SLACK: Final = 0.05
WAKE_CHANNEL: Final = "recorder_wake"
LEASE_CHANNEL: Final = "recorder_leases"
_NOTIFY_BYTES: Final = 7000  # PostgreSQL's payload limit is 8000 bytes


def new_replica_id() -> str:
    """Unique per process (a restarted replica is a new member): host, pid and a random tail."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Held:
    token: int
    deadline: float  # by the replica's monotonic clock


class ReplicaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.acquired = Counter(
            "lease_acquisitions", "Shard leases acquired, by kind", ["kind"], registry=registry
        )
        self.lost = Counter(
            "lease_losses",
            "Shard leases given up or lost, by reason",
            ["reason"],
            registry=registry,
        )
        self.takeovers = Counter(
            "lease_takeovers",
            "Shards taken over from a replica whose lease expired",
            registry=registry,
        )
        self.owned = Gauge(
            "owned_shards", "Shards whose lease this replica holds", registry=registry
        )
        self.live = Gauge("live_replicas", "Replicas with a live heartbeat", registry=registry)
        self.wakes_sent = Counter(
            "wake_notifications_sent", "Keys forwarded to their owner", registry=registry
        )
        self.wakes_received = Counter(
            "wake_notifications_received", "Keys woken by another replica", registry=registry
        )


@dataclass
class Replica:
    """The :class:`~service.replicas.ownership.Ownership` of one replica on PostgreSQL."""

    pool: asyncpg.Pool
    database_url: str
    lease_seconds: float
    registry: CollectorRegistry
    id: str = field(default_factory=new_replica_id)
    shards: int = SHARDS
    info: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    #: Told the shards just acquired (the controller enqueues their rooms).
    on_gain: Callable[[frozenset[int]], None] | None = None
    #: Told a key another replica forwarded, and its delay.
    on_wake: Callable[[str, float], None] | None = None
    #: Told the wake listener reconnected (notifications may have been missed meanwhile).
    on_reconnect: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self.table = LeaseTable(self.pool, self.lease_seconds)
        self.metrics = ReplicaMetrics(self.registry)
        self.held: dict[int, Held] = {}
        self.members: list[Member] = []
        self.leases: dict[int, Lease] = {}
        self.started_at = datetime.now().astimezone()
        self._in_flight: dict[int, int] = {}
        self._drained = asyncio.Event()
        self._poke = asyncio.Event()
        self._outbox: dict[str, float] = {}
        self._flushing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._lost_listener = asyncio.Event()
        self.info = {"host": socket.gethostname(), "pid": os.getpid(), **self.info}

    # -- ownership ----------------------------------------------------------------------------

    @property
    def renew_every(self) -> float:
        return self.lease_seconds / 3

    @property
    def recheck_after(self) -> float:
        return self.renew_every

    def owns(self, key: str) -> bool:
        held = self.held.get(shard_of(key, self.shards))
        return held is not None and self.clock() < held.deadline

    def forward(self, key: str, delay: float) -> None:
        current = self._outbox.get(key)
        self._outbox[key] = delay if current is None else min(current, delay)
        if not self._flushing:
            self._flushing = True
            self._spawn(self._flush())

    @contextlib.contextmanager
    def acting_on(self, key: str) -> Iterator[Fence]:
        shard = shard_of(key, self.shards)
        held = self.held.get(shard)
        if held is None or self.clock() >= held.deadline:
            raise NotOwner(f"shard {shard} is not held by {self.id}")
        token = held.token
        self._in_flight[shard] = self._in_flight.get(shard, 0) + 1
        try:
            with pass_check(lambda: self._check(shard, token)):
                yield Fence(shard=shard, token=token, owner=self.id)
        finally:
            self._in_flight[shard] -= 1
            if not self._in_flight[shard]:
                del self._in_flight[shard]
                self._drained.set()

    def _check(self, shard: int, token: int) -> None:
        held = self.held.get(shard)
        if held is None or held.token != token or self.clock() >= held.deadline:
            raise NotOwner(f"the lease of shard {shard} (token {token}) is gone")

    def owned(self) -> list[int]:
        now = self.clock()
        return sorted(s for s, h in self.held.items() if now < h.deadline)

    def describe(self) -> dict[str, Any]:
        """For ``/readyz``: who we are, what we hold, who else is live (as of our last tick)."""
        return {
            "id": self.id,
            "started_at": self.started_at.isoformat(),
            "lease_seconds": self.lease_seconds,
            "shards": self.shards,
            "owned_shards": self.owned(),
            "tokens": {str(s): h.token for s, h in sorted(self.held.items())},
            "live_replicas": [
                {
                    "id": m.id,
                    "heartbeat_at": m.heartbeat_at.isoformat(),
                    "info": m.info,
                    "shards": sum(
                        1 for lease in self.leases.values() if lease.owner == m.id and lease.valid
                    ),
                }
                for m in self.members
            ],
        }

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Join: create the shard rows, listen for wakes, and take what is ours and free."""
        await self.table.create_rows(self.shards)
        await self._listen()
        self._listen_task = asyncio.create_task(self._keep_listening())
        await self.tick()

    def run(self) -> None:
        """Start the lease loop (after the controller, which the loop's callbacks reach)."""
        self._loop_task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Leave: stop renewing, give every shard back and drop out of the membership, so
        that the others take over now rather than after the TTL."""
        for task in (self._loop_task, self._listen_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        held, self.held = self.held, {}
        with contextlib.suppress(Exception):
            await self.table.release(self.id, {s: h.token for s, h in held.items()})
            await self.table.leave(self.id)
            await self.pool.execute("SELECT pg_notify($1, $2)", LEASE_CHANNEL, self.id)
        self.metrics.lost.labels("released").inc(len(held))
        self.metrics.owned.set(0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()

    async def _run(self) -> None:
        delay = self.renew_every
        while True:
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._poke.wait()
            try:
                delay = await self.tick()
            except Exception:
                log.exception("lease tick failed")
                delay = self.renew_every / 2

    # -- the tick -----------------------------------------------------------------------------

    async def tick(self) -> float:
        """One heartbeat, release and acquisition round; returns when to run the next one."""
        sent = self.clock()
        tick = await self.table.heartbeat(
            self.id, self.info, {s: h.token for s, h in self.held.items()}
        )
        for shard, held in list(self.held.items()):
            if tick.renewed.get(shard) == held.token:
                held.deadline = sent + self.lease_seconds * SAFETY
            else:
                del self.held[shard]
                owner = tick.leases[shard].owner if shard in tick.leases else None
                reason = "taken" if owner not in (None, self.id) else "lost"
                self.metrics.lost.labels(reason).inc()
                log.warning("lease lost", shard=shard, fence=held.token, owner=owner)
        self.members, self.leases = tick.members, tick.leases
        live = {m.id for m in tick.members}
        self.metrics.live.set(len(live | {self.id}))
        wanted = wanted_by(self.id, live, self.shards)
        surplus = {s: h.token for s, h in self.held.items() if s not in wanted}
        if surplus:
            await self._release(surplus)
        free = [
            s
            for s in sorted(wanted)
            if s not in self.held and (not tick.leases[s].valid or tick.leases[s].owner == self.id)
        ]
        if free:
            await self._acquire(free)
        self.metrics.owned.set(len(self.held))
        return self._next_delay(tick.leases)

    def _next_delay(self, leases: dict[int, Lease]) -> float:
        """A third of the TTL, or just after the soonest lease of somebody else expires."""
        soonest = min(
            (
                lease.remaining
                for lease in leases.values()
                if lease.valid and lease.owner != self.id
            ),
            default=self.renew_every,
        )
        return max(0.01, min(self.renew_every, soonest + EXPIRY_SLACK))

    async def _acquire(self, shards: list[int]) -> None:
        sent = self.clock()
        got = await self.table.acquire(self.id, shards)
        for lease in got:
            self.held[lease.shard] = Held(lease.token, sent + self.lease_seconds * SAFETY)
            if lease.previous not in (None, self.id):
                kind = "takeover"
                self.metrics.takeovers.inc()
            else:
                kind = "free"
            self.metrics.acquired.labels(kind).inc()
            log.info(
                "lease acquired",
                shard=lease.shard,
                fence=lease.token,
                kind=kind,
                previous=lease.previous,
            )
        if got and self.on_gain is not None:
            self.on_gain(frozenset(lease.shard for lease in got))

    async def _release(self, surplus: dict[int, int]) -> None:
        """Stop acting on the shards first (passes refused from now on), let the passes in
        flight end (bounded), then free them in the table and tell the others."""
        for shard in surplus:
            del self.held[shard]
        deadline = self.clock() + DRAIN_SECONDS
        while any(s in self._in_flight for s in surplus) and self.clock() < deadline:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - self.clock())):
                    await self._drained.wait()
        released = await self.table.release(self.id, surplus)
        self.metrics.lost.labels("released").inc(len(released))
        log.info("leases released", shards=sorted(released))
        await self.pool.execute("SELECT pg_notify($1, $2)", LEASE_CHANNEL, self.id)

    # -- waking other replicas ----------------------------------------------------------------

    async def _flush(self) -> None:
        """Send the keys gathered since the last flush: one NOTIFY per ~7 kB of keys."""
        try:
            while self._outbox:
                batch, size = [], 0
                for key in list(self._outbox):
                    batch.append([key, self._outbox.pop(key)])
                    size += len(key) + 16
                    if size > _NOTIFY_BYTES:
                        break
                payload = json.dumps({"from": self.id, "wake": batch}, separators=(",", ":"))
                await self.pool.execute("SELECT pg_notify($1, $2)", WAKE_CHANNEL, payload)
                self.metrics.wakes_sent.inc(len(batch))
        except Exception:
            log.exception("forwarding wakes failed (the owner's resync finds them)")
            self._outbox.clear()
        finally:
            self._flushing = False

    def _on_notification(self, conn: object, pid: int, channel: str, payload: object) -> None:
        if channel == LEASE_CHANNEL:
            if payload != self.id:
                self._poke.set()  # somebody released or left: look now
            return
        try:
            message = json.loads(str(payload))
            if message.get("from") == self.id:
                return
            for key, delay in message.get("wake", []):
                if self.on_wake is not None and self.owns(key):
                    self.metrics.wakes_received.inc()
                    self.on_wake(str(key), float(delay))
        except Exception:
            log.exception("bad wake notification")

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.database_url)
        conn.add_termination_listener(lambda _: self._lost_listener.set())
        await conn.add_listener(WAKE_CHANNEL, self._on_notification)
        await conn.add_listener(LEASE_CHANNEL, self._on_notification)
        self._listener = conn
        self._lost_listener.clear()

    async def _keep_listening(self) -> None:
        """A dedicated connection for LISTEN; when it drops, connect again (with backoff),
        and have the controller resync for whatever was missed meanwhile."""
        backoff = 0.1
        while True:
            await self._lost_listener.wait()
            log.warning("wake listener lost; reconnecting")
            while True:
                try:
                    await self._listen()
                    break
                except Exception as exc:
                    log.warning("wake listener reconnect failed", error=repr(exc))
                    await asyncio.sleep(backoff)  # backoff between attempts
                    backoff = min(backoff * 2, self.renew_every)
            backoff = 0.1
            if self.on_reconnect is not None:
                self.on_reconnect()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
