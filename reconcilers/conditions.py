"""Which of a room's conditions hold, as of a pass: what the ``room_conditions`` index keeps.

The API's views (``service.api.views``) give each condition its reason, message and times;
filtering a listing by condition needs only whether it holds. A listing cannot compute the
view of every room to find the few that match (50,000 rooms: a pass's reads each, ~20 s), so
each pass records the conditions that hold when they change (``room.conditions``), and the
``room_conditions`` projection files a row per room and condition that holds, indexed by
condition and tenant: a filtered listing reads the matching rooms only, and checks each
against its live view. The index is as of each room's last pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconcilers.events import Event, Row
from reconcilers.observed import Desired, Observed, SessionObs
from reconcilers.plan import describe_drift, live_drift, spec_drift

CONDITIONS = ("Recording", "Progressing", "Degraded")
RECORDED = "room.conditions"


@dataclass(frozen=True)
class Sync:
    """How far the running session is from the spec."""

    recording: SessionObs | None  # the session recording the room now (an old one mid-rollover)
    observed_generation: int | None
    pending: str  # why the session does not match the spec yet ("" when it does)
    reason: str  # Progressing's reason while it does not: RollingOver, Restarting, Updating


def sync(d: Desired | None, o: Observed) -> Sync:
    """Which session records the room now, and how far it is from the spec."""
    cur = o.current
    session = o.session(cur.sid) if cur else None
    older = [
        s
        for s in o.sessions
        if s.ours and s.state == "recording" and s.sid != (session.sid if session else None)
        and s.segment is not None and cur is not None and s.segment < cur.segment
    ]
    recording = session if session is not None and session.state == "recording" else None
    if d is None:
        return Sync(recording, None, "", "")
    if recording is None and older:
        # Make-before-break: the new segment starts while the old one records on.
        old = older[-1]
        what = describe_drift(d.spec, old, spec_drift(d.spec, old)) or "the segment"
        pending = (
            f"rollover ({what}): segment {cur.segment if cur else '?'} is starting with "
            f"generation {d.generation}; segment {old.segment} records until it does"
        )
        return Sync(old, old.generation, pending, "RollingOver")
    if session is None or not session.alive:
        in_sync = d.spec.state == "stopped"
        return Sync(None, d.generation if in_sync else None, "", "")
    drift = spec_drift(d.spec, session)
    if drift:
        what = describe_drift(d.spec, session, drift)
        if d.spec.rollout == "restart":
            return Sync(recording, session.generation, f"{what} changed: restarting", "Restarting")
        pending = f"{what} changed: a new segment starts before this one stops"
        return Sync(recording, session.generation, pending, "RollingOver")
    if live_drift(d.spec, session):
        return Sync(recording, session.generation, "live options wait for an update", "Updating")
    return Sync(recording, d.generation, "", "")


def holding(desired: Desired | None, observed: Observed) -> tuple[str, ...]:
    """The conditions that hold, in ``CONDITIONS`` order (the view's rules, without words:
    ``service.api.views`` decides the same from the same :func:`sync`)."""
    cur = observed.current
    session = observed.session(cur.sid) if cur else None
    now = sync(desired, observed)
    recording = now.recording is not None
    missing = not recording and session is not None and session.state == "missing"
    wanted = desired is not None and desired.spec.state == "recording"
    rejected = desired is not None and observed.rejected_generation == desired.generation
    recovering = missing and desired is not None and desired.spec.recovery != "aggressive"
    starting = not recording and not rejected and not observed.channel_empty
    progressing = wanted and (bool(now.pending) or recovering or starting)
    flags = {"Recording": recording, "Progressing": progressing, "Degraded": rejected}
    return tuple(c for c in CONDITIONS if flags[c])


def index_of(condition: str, tenant: str) -> str:
    return f"{condition}|{tenant}"


def key_of(condition: str, room: str) -> str:
    """``Recording|acme/standup``: ordered by room within a condition and tenant."""
    return f"{condition}|{room}"


class RoomConditions:
    """The rooms where one condition holds, as of each room's last recorded change: one
    instance per condition (a fold sees one key at a time and must know which it folds),
    all three filed under one projection name."""

    name = "room_conditions"

    def __init__(self, condition: str) -> None:
        self.condition = condition

    def keys(self, event: Event) -> Sequence[str]:
        if not event.room or "/" not in event.room:
            return []
        recorded = event.source == "reconciler" and event.type == RECORDED
        deleted = event.source == "api" and event.type == "room.deleted"
        return [key_of(self.condition, event.room)] if recorded or deleted else []

    def apply(self, row: Row | None, event: Event) -> Row | None:
        if event.type != RECORDED or self.condition not in event.payload.get("holding", []):
            return None
        room = event.room or ""
        since = row.data["since_seq"] if row else event.seq
        data: dict[str, Any] = {"room": room, "since_seq": since}
        index = index_of(self.condition, room.split("/", 1)[0])
        return Row(self.name, key_of(self.condition, room), index, data, event.seq)


CONDITION_PROJECTIONS: tuple[RoomConditions, ...] = tuple(RoomConditions(c) for c in CONDITIONS)
