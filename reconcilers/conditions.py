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
from typing import Any

from reconcilers.events import Event, Row
from reconcilers.observed import Desired, Observed

CONDITIONS = ("Recording", "Progressing", "Degraded")
RECORDED = "room.conditions"


def holding(desired: Desired | None, observed: Observed) -> tuple[str, ...]:
    """The conditions that hold, in ``CONDITIONS`` order (the view's rules, without words)."""
    cur = observed.current
    session = observed.session(cur.sid) if cur else None
    recording = session is not None and session.state == "recording"
    wanted = desired is not None and desired.spec.state == "recording"
    rejected = desired is not None and observed.rejected_generation == desired.generation
    progressing = wanted and not recording and not rejected and not observed.channel_empty
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
