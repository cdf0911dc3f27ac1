"""The controller: a keyed workqueue feeding reconcile passes, woken by events and a resync.

Events are hints: ``notify(event)`` only enqueues keys. A periodic resync enqueues every room so
that a lost hint is found again; a healthy room requeues itself after its query interval, which
the query budget stretches when the provider's rate limit demands it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from reconcilers.actions import segment_of, session_of
from reconcilers.budget import QueryBudget
from reconcilers.engine import CHANNEL_PREFIX, QueryRequest, Reconciler
from reconcilers.events import Event
from reconcilers.hints import wakes, wakes_channel
from reconcilers.plan import PlanConfig
from reconcilers.workqueue import Done, RequeueAfter, Result, Terminal, Workers, WorkQueue
from service.inventory import live_sessions, orphan_channels, room_index
from service.periodic import Periodic
from service.replicas.ownership import NotOwner, Ownership, SoleOwner
from service.store.errors import StaleFence

log = structlog.get_logger("controller")

#: A provider's notifications for one session come several at once (status updates, slices,
#: joins): they wake the room once, this long after the first, not once each.
EVENT_COALESCE_SECONDS = 0.05
#: A channel no room wants (sessions to stop) is in no hurry, and may be busy (recorded by
#: another tool): its events wake it at most this often.
ORPHAN_COALESCE_SECONDS = 0.5


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.passes = Counter(
            "reconcile_passes", "Reconcile passes by result", ["result"], registry=registry
        )
        self.duration = Histogram(
            "reconcile_pass_seconds", "Duration of a reconcile pass", registry=registry
        )
        self.actions = Counter(
            "reconcile_actions",
            "Provider actions by kind and outcome",
            ["kind", "outcome"],
            registry=registry,
        )
        self.depth = Gauge("workqueue_depth", "Keys ready in the workqueue", registry=registry)
        self.depth_routine = Gauge(
            "workqueue_depth_routine",
            "Ready keys waiting at the low priority (requeues, resync) behind woken ones",
            registry=registry,
        )
        self.query_interval = Gauge(
            "query_interval_seconds", "Current per-session query interval", registry=registry
        )
        self.budget_stretched = Gauge(
            "query_budget_stretched",
            "1 when the provider's rate limit stretches the query interval",
            registry=registry,
        )
        self.live_sessions = Gauge("live_sessions", "Live provider sessions", registry=registry)
        self.not_recording = Gauge(
            "rooms_not_recording",
            "Rooms of this replica desired recording whose last pass found no recording"
            " (and a channel with people in it)",
            registry=registry,
        )
        self.not_recording_max = Gauge(
            "room_not_recording_seconds_max",
            "How long the room that has waited longest has been desired recording and not"
            " recording, by its passes",
            registry=registry,
        )
        self.orphans = Gauge(
            "orphan_channels",
            "Channels with a live session of ours that no room wants (the last resync's count)",
            registry=registry,
        )
        self.refused = Counter(
            "stale_fence_refusals",
            "Passes stopped because this replica no longer holds the room's shard: refused by"
            " the store's fence check, or by the replica's own view of its lease",
            ["where"],
            registry=registry,
        )
        self.not_mine = Counter(
            "reconcile_skipped_not_owned",
            "Keys taken from the queue whose shard another replica holds now",
            registry=registry,
        )


class Stopping(Exception):
    """The controller stopped before a key's worker took a :meth:`Controller.run_key` request."""


class Controller:
    """Owns the workqueue, its workers, the resync schedule and the event router."""

    def __init__(
        self,
        reconciler: Reconciler,
        registry: CollectorRegistry,
        *,
        rate_per_s: float,
        workers: int = 8,
        resync_interval: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ownership: Ownership | None = None,
    ) -> None:
        self.reconciler = reconciler
        #: Which keys this replica may act on (all of them on SQLite).
        self.ownership: Ownership = ownership if ownership is not None else SoleOwner()
        self.queue: WorkQueue[str] = WorkQueue()
        self.workers = Workers(self.queue, self._reconcile, workers, on_result=self._observe)
        self.resync_interval = resync_interval
        self.clock = clock
        self.metrics = ControllerMetrics(registry)
        self.budget = QueryBudget(
            rate_per_s=rate_per_s, min_interval=reconciler.config.query_interval
        )
        self.plan_config: PlanConfig = reconciler.config
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._last: dict[str, datetime] = {}
        self._resyncs = Periodic("resync", self.resync, resync_interval)
        self._ids = itertools.count(1)
        self._resync_lock = asyncio.Lock()
        self._by_channel: dict[str, set[str]] = {}
        self._channel_of: dict[str, str] = {}
        self._unwanted: set[str] = set()  # channels the store said no room wants, until resync
        #: Index changes made while a resync reads its snapshot: replayed over the snapshot.
        self._index_log: list[tuple[str, str | None]] | None = None
        self._resync_wanted: asyncio.Task[None] | None = None
        #: What :meth:`run_key` asked of each key's next pass, and who awaits its result.
        self._asked: dict[str, list[tuple[QueryRequest | None, asyncio.Future[Result]]]] = {}
        #: Rooms desired recording that their last pass found not recording, and since when.
        self._not_recording_since: dict[str, datetime] = {}
        self.metrics.not_recording.set_function(lambda: len(self._not_recording_since))
        self.metrics.not_recording_max.set_function(self._longest_not_recording)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.workers.run()),
            asyncio.create_task(self._route_events()),
        ]
        self._resyncs.start()

    async def drain(self) -> None:
        """Start no pass, and wait for the passes in flight (a drain step: see service.drain).

        The keys still queued are dropped: the level-triggered resync finds them again, here
        after a restart or on the replica that takes the rooms over.
        """
        await self._pause_resync()
        in_flight = self.queue.processing
        self.queue.shutdown(drain=False)
        self._refuse_asked()
        log.info("waiting for the passes in flight", passes=in_flight)
        if self._tasks:
            await asyncio.wait([self._tasks[0]])  # the workers: they return once idle

    async def _pause_resync(self) -> None:
        if self._resync_wanted is not None:
            self._resync_wanted.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync_wanted
            self._resync_wanted = None
        await self._resyncs.stop(grace=5.0)  # a resync under way may finish its snapshot

    async def stop(self) -> None:
        await self._pause_resync()
        self.queue.shutdown(drain=False)
        self._refuse_asked()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- inputs -------------------------------------------------------------------------------

    def run_key(self, key: str, query: QueryRequest | None = None) -> asyncio.Future[Result]:
        """Have ``key``'s worker run a pass of it, first asking the provider about ``query``'s
        sessions: the API's provider queries go through the workqueue like any pass, so one
        worker per key holds. The future is the pass's result (:class:`Stopping` if the
        controller stops first)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        if self.queue.shutting_down:
            future.set_exception(Stopping("the controller is stopping"))
            return future
        self._asked.setdefault(key, []).append((query, future))
        self.enqueue(key)
        return future

    def _refuse_asked(self) -> None:
        asked, self._asked = self._asked, {}
        for _, future in (entry for entries in asked.values() for entry in entries):
            if not future.done():
                future.set_exception(Stopping("the controller is stopping"))

    def enqueue(self, key: str) -> None:
        self.queue.add(key)
        self._gauge_depth()

    def _gauge_depth(self) -> None:
        self.metrics.depth.set(len(self.queue))
        self.metrics.depth_routine.set(self.queue.depth_low)

    def notify(self, event: Event) -> None:
        """The intake's hook: wake the event's keys now when the in-memory index knows them;
        an event for a channel it does not know waits for the store, off the request path.
        A recorder's own progress reports wake nothing (:mod:`reconcilers.hints`)."""
        if not wakes(event, self.plan_config.uids):
            return
        keys = self._known_keys(event)
        if keys is None:
            self._events.put_nowait(event)
        else:
            self._wake(event, keys)

    def _wake(self, event: Event, keys: list[str]) -> None:
        for key in keys:
            if event.source == "api":
                delay = 0.0
            elif key.startswith(CHANNEL_PREFIX):
                if not wakes_channel(event, self.plan_config.uids):
                    continue  # no room wants it: only a recorder of ours there matters
                delay = ORPHAN_COALESCE_SECONDS
            else:  # a provider's events come in bursts: one pass for the burst
                delay = EVENT_COALESCE_SECONDS
            if self.ownership.owns(key):
                self.wake(key, delay)
            else:  # another replica's room: wake it there (PostgreSQL's NOTIFY)
                self.ownership.forward(key, delay)

    def wake(self, key: str, delay: float) -> None:
        """Run ``key``'s pass after ``delay`` seconds (now when 0): an event's or a peer's."""
        if delay <= 0:
            self.enqueue(key)
        else:
            self.queue.add_after(key, delay)

    def shards_gained(self, shards: frozenset[int]) -> None:
        """The replica took over shards: their rooms are ours now, so look at all of them (one
        resync for however many shards came at once)."""
        self.resync_soon()

    def resync_soon(self) -> None:
        if self._resync_wanted is None or self._resync_wanted.done():
            self._resync_wanted = asyncio.ensure_future(self._resync_logged())

    async def _resync_logged(self) -> None:
        try:
            await self.resync()
        except Exception:
            log.exception("resync failed")

    async def _route_events(self) -> None:
        while True:
            event = await self._events.get()
            try:
                self._wake(event, await self.keys_for(event))
            except Exception:
                log.exception("routing an event failed", seq=event.seq)

    async def keys_for(self, event: Event) -> list[str]:
        """The keys an event concerns: its room, or the rooms (else the channel) it names.

        Webhooks come by the thousand: the channel → rooms index is kept in memory (built by
        every resync; a channel it does not know is looked up in the store once, and a miss is
        remembered until the next resync), not read from the store per event. A stale entry
        only wakes a room that no longer wants the channel, and the channel's own pass checks
        again that no room wants it before it stops anything.
        """
        keys = self._known_keys(event)
        if keys is not None:
            return keys
        assert event.room is not None  # _known_keys answers for events without a room
        ckey = f"{event.source}/{event.room}"
        rows = await self.reconciler.store.rows("rooms", room=ckey)
        rooms = {row.key for row in rows if not row.data.get("deleted")}
        for room in rooms:
            self._index_room(room, ckey)
        rooms |= self._by_channel.get(ckey, set())  # indexed while we were reading
        if not rooms:
            self._unwanted.add(ckey)
        return sorted(rooms) if rooms else [CHANNEL_PREFIX + ckey]

    def _known_keys(self, event: Event) -> list[str] | None:
        """The keys, from memory alone; ``None`` when only the store can tell."""
        if event.source == "reconciler":
            return []  # our own intents and results: the pass that wrote them requeues itself
        if event.source == "api":
            if event.type in ("room.desired", "room.deleted") and event.room:
                deleted = event.type == "room.deleted"
                self._index_room(event.room, None if deleted else event.payload.get("channel_key"))
            return [event.room] if event.room else []
        if not event.room:
            return []
        ckey = f"{event.source}/{event.room}"
        rooms = self._by_channel.get(ckey)
        if rooms:
            return sorted(rooms)
        return [CHANNEL_PREFIX + ckey] if ckey in self._unwanted else None

    def _index_room(self, room: str, channel_key: str | None) -> None:
        """``room`` now wants ``channel_key`` (``None``: nothing, it was deleted)."""
        if self._index_log is not None:
            self._index_log.append((room, channel_key))
        old = self._channel_of.pop(room, None)
        if old is not None:
            self._by_channel.get(old, set()).discard(room)
        if channel_key:
            self._unwanted.discard(channel_key)
            self._channel_of[room] = channel_key
            self._by_channel.setdefault(channel_key, set()).add(room)

    async def resync(self) -> None:
        """Enqueue every key nothing else will wake, and size the query interval to the live
        sessions we have."""
        async with self._resync_lock:
            await self._resync()

    async def _resync(self) -> None:
        store = self.reconciler.store
        self._index_log = []
        try:
            keys, by_channel = await room_index(store)
        finally:
            changed_meanwhile, self._index_log = self._index_log, None
        # The snapshot may predate rooms the API indexed while it was read (seen in the
        # benchmark: a room declared during the first resync never woke on its events).
        self._by_channel = {c: set(rooms) for c, rooms in by_channel.items()}
        self._channel_of = {room: c for c, rooms in by_channel.items() for room in rooms}
        self._unwanted = set()
        for room, channel_key in changed_meanwhile:
            self._index_room(room, channel_key)
        orphans = await orphan_channels(store, set(by_channel))
        self.metrics.orphans.set(len(orphans))
        keys += [CHANNEL_PREFIX + c for c in orphans]
        live = await live_sessions(store)
        interval = self.budget.interval(live)
        self.plan_config = replace(self.reconciler.config, query_interval=interval)
        self.metrics.query_interval.set(interval)
        self.metrics.budget_stretched.set(1 if self.budget.stretched(live) else 0)
        self.metrics.live_sessions.set(live)
        owns = self.ownership.owns
        for room in [r for r in self._not_recording_since if not owns(r) or r not in keys]:
            del self._not_recording_since[room]  # deleted, or another replica's now
        for key in keys:
            if not owns(key):
                continue  # another replica's
            # A key already scheduled (a requeue pending) or being processed runs anyway, and
            # its pass would see what this one would: the resync is for keys nothing will wake.
            # At 10,000 rooms, a pass for every key every 30 s cost a third of the CPU.
            if self.queue.next_due(key) is None and not self.queue.is_processing(key):
                self.queue.add(key, low=True)  # routine: behind whatever events woke
        self._gauge_depth()

    # -- work ---------------------------------------------------------------------------------

    async def _reconcile(self, key: str) -> Result:
        asked = self._asked.pop(key, [])
        try:
            result = await self._pass(key, [query for query, _ in asked if query is not None])
        except BaseException as exc:
            for _, future in asked:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else Stopping())
            raise
        for _, future in asked:
            if not future.done():
                future.set_result(result)
        return result

    async def _pass(self, key: str, queries: list[QueryRequest]) -> Result:
        if not self.ownership.owns(key):
            self.metrics.not_mine.inc()
            return Done()  # its shard moved while it waited: the owner looks after it
        structlog.contextvars.bind_contextvars(room=key, reconcile_id=next(self._ids))
        try:
            try:
                with self.ownership.acting_on(key) as fence:
                    for query in queries:  # asked by the API (sync, recover): before the plan
                        await self.reconciler.query(query, fence)
                    result = await self.reconciler.reconcile(key, self.plan_config, fence=fence)
            except StaleFence as exc:
                # Another replica holds the shard now and acts: terminal, no retries here.
                self.metrics.refused.labels("fence").inc()
                log.warning("pass refused: the shard is not ours", where="fence", error=str(exc))
                return Terminal(f"not mine: {exc}")
            except NotOwner as exc:
                # Our own clock ended the lease first (a slow renewal, a pause): the shard may
                # well be renewed in a moment. One look later (skipped unless ours by then).
                self.metrics.refused.labels("local").inc()
                log.warning("pass refused: the shard is not ours", where="local", error=str(exc))
                return RequeueAfter(self.ownership.recheck_after)
            for done in result.report.done if result.report else []:
                action = done.action
                # Labels from closed sets only: the kind and the outcome, never a sid.
                self.metrics.actions.labels(action.kind, done.label).inc()
                log.info(
                    "action",
                    kind=action.kind,
                    reason=action.reason,
                    outcome=done.label,
                    detail=done.detail,
                    sid=session_of(action),
                    segment=segment_of(action),
                )
            self._track_recording(key, result.conditions)
            return result.result
        finally:
            structlog.contextvars.unbind_contextvars("room", "reconcile_id")

    def _track_recording(self, key: str, conditions: tuple[str, ...]) -> None:
        """Progressing (trying) or Degraded (refused): desired recording, and not recording."""
        if "Progressing" in conditions or "Degraded" in conditions:
            self._not_recording_since.setdefault(key, self.clock())
        else:
            self._not_recording_since.pop(key, None)

    def _longest_not_recording(self) -> float:
        if not self._not_recording_since:
            return 0.0
        oldest = min(self._not_recording_since.values())
        return max((self.clock() - oldest).total_seconds(), 0.0)

    def _observe(self, key: str, result: Result, seconds: float) -> None:
        self._last[key] = self.clock()
        self.metrics.passes.labels(result.kind).inc()
        self.metrics.duration.observe(seconds)
        self._gauge_depth()

    def timing(self, key: str) -> tuple[datetime | None, datetime | None]:
        """When the key was last reconciled, and when it is next due (if scheduled)."""
        due = self.queue.next_due(key)
        nxt = None
        if due is not None:
            nxt = self.clock() + timedelta(seconds=max(due - self.queue.now(), 0.0))
        return self._last.get(key), nxt
