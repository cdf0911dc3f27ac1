"""Refresh before planning, like ``terraform plan``: ask the provider about the sessions the log
believes alive, so that ``recctl reconcile`` and ``recctl status --refresh`` plan from what is,
not only from what was last heard (a recorder killed while the service was down reads as
healthy in the log).

The calls are the provider's read-only ``query``, made through the same executor as the
controller's own refresh and under the same rate limiter. What they learn is folded by the
domain's projections: into the log itself when the command acts anyway (``reconcile``), or into
an in-memory :class:`Overlay` of the store when it must change nothing (``--dry-run``,
``status``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from reconcilers.actions import Query
from reconcilers.engine import Reconciler, RoomState
from reconcilers.events import Appended, Event, NewEvent, Projection, Row, Store
from reconcilers.executor import Executor
from reconcilers.outcomes import Ended
from reconcilers.report import ActionDone, Queried

#: Overlay events are numbered past any real log: they never meet a stored one.
_OVERLAY_SEQ = 1 << 62


class Overlay:
    """A store that keeps its appends in memory over a base it only reads: a dry run folds what
    the provider said exactly as the service would, and writes nothing."""

    def __init__(self, base: Store, projections: Sequence[Projection]) -> None:
        self.base = base
        self.projections = projections
        self._rows: dict[tuple[str, str], Row | None] = {}
        self._events: list[Event] = []

    async def append(self, event: NewEvent) -> Appended:
        for earlier in self._events:
            if (earlier.source, earlier.dedup_key) == (event.source, event.dedup_key):
                return Appended(earlier, True)
        stored = Event(
            seq=_OVERLAY_SEQ + len(self._events),
            source=event.source,
            dedup_key=event.dedup_key,
            type=event.type,
            payload=event.payload,
            room=event.room,
            session=event.session,
            received_at=event.received_at or datetime.now(UTC),
            occurred_at=event.occurred_at,
        )
        self._events.append(stored)
        for projection in self.projections:
            for key in projection.keys(stored):
                before = await self.get_row(projection.name, key)
                self._rows[(projection.name, key)] = projection.apply(before, stored)
        return Appended(stored, False)

    async def read_log(
        self, since_seq: int = 0, room: str | None = None, limit: int = 1000
    ) -> list[Event]:
        found = await self.base.read_log(since_seq, room, limit)
        mine = [e for e in self._events if e.seq > since_seq and room in (None, e.room)]
        return (found + mine)[:limit]

    async def get_row(self, projection: str, key: str) -> Row | None:
        if (projection, key) in self._rows:
            return self._rows[(projection, key)]
        return await self.base.get_row(projection, key)

    async def rows(
        self, projection: str, room: str | None = None, after_key: str = "", limit: int = 1000
    ) -> list[Row]:
        merged = {r.key: r for r in await self.base.rows(projection, room, after_key, limit)}
        for (name, key), row in self._rows.items():
            if name != projection or key <= after_key:
                continue
            if row is None or (room is not None and row.room != room):
                merged.pop(key, None)  # gone, or filed under another index now
            else:
                merged[key] = row
        return [merged[k] for k in sorted(merged)][:limit]

    async def replay(self) -> int:
        raise RuntimeError("an overlay folds in memory: replay the store under it")

    async def ping(self) -> None:
        await self.base.ping()

    async def close(self) -> None:
        """The base belongs to the caller: nothing to close here."""


@dataclass(frozen=True)
class Look:
    """One session: what the log says of it, and what the provider answered now."""

    sid: str
    logged: str
    provider: str


@dataclass(frozen=True)
class Refreshed:
    """A key's state after the refresh, and what each query found."""

    state: RoomState
    looks: tuple[Look, ...]
    reconciler: Reconciler  # plans from the refreshed state (over the overlay on a dry run)


async def refresh(reconciler: Reconciler, key: str, *, persist: bool) -> Refreshed:
    """Query the provider about each session of ``key`` the log believes alive, fold the
    answers (into the log when ``persist``, else into an overlay), and read the state again."""
    from reconcilers.projections import PROJECTIONS

    store: Store = reconciler.store if persist else Overlay(reconciler.store, PROJECTIONS)
    looking = dataclasses.replace(reconciler, store=store)
    before = await looking.state(key)
    looks: list[Look] = []
    for session in before.observed.sessions:
        handle = before.handles.get(session.sid)
        provider = reconciler.providers.get(handle.provider) if handle else None
        if handle is None or provider is None or not session.alive:
            continue
        is_ours = reconciler.config.uids.contains
        executor = Executor(store, provider, reconciler.storage_for, reconciler.clock, is_ours)
        query = Query("refresh: look before planning", sid=session.sid)
        report = await executor.run(key, before.desired, (query,), {session.sid: handle})
        answer = _answer(report.done[0]) if report.done else "-"
        looks.append(Look(session.sid, session.state, answer))
    after = await looking.state(key) if looks else before
    return Refreshed(after, tuple(looks), looking)


def _answer(done: ActionDone) -> str:
    match done.outcome:
        case Queried(state=state):
            return state
        case Ended():
            return "not found (404)"
    return f"{done.label}: {done.detail}" if done.detail else done.label
