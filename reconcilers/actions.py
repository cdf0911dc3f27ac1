"""The steps a plan can ask for: one frozen type per kind, matched with ``match``.

Each kind carries what its call needs and nothing else (a query names a session; a reserve
names a segment and its recorder uid), so the executor cannot be handed a stop without a sid.
``reason`` is for people: the plan table and the log. ``kind`` is the metric label and the
table's word for it, from a closed set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias

ActionKind = Literal["reserve", "start", "query", "update", "stop", "adopt", "presence"]


@dataclass(frozen=True)
class Reserve:
    """Reserve a resource for ``segment`` under recorder ``uid``, then start on it.

    ``attempt`` is the how-many-th reservation of this segment: part of the intent id, so a
    retry is a new intent while a replay of the same one is not."""

    reason: str
    segment: int
    uid: str
    attempt: int = 0
    kind: ClassVar[ActionKind] = "reserve"


@dataclass(frozen=True)
class Start:
    """Start on a resource reserved by an earlier pass (its start's result never came)."""

    reason: str
    segment: int
    uid: str
    resource_id: str | None
    #: The reservation's own attempt: the same intent as the start that was lost.
    attempt: int = 0
    kind: ClassVar[ActionKind] = "start"


@dataclass(frozen=True)
class Adopt:
    """Take a running session with this segment's uid as the segment's own: no provider call."""

    reason: str
    segment: int
    uid: str
    sid: str
    resource_id: str | None = None
    kind: ClassVar[ActionKind] = "adopt"


@dataclass(frozen=True)
class Query:
    """Ask the provider how session ``sid`` is doing."""

    reason: str
    sid: str
    kind: ClassVar[ActionKind] = "query"


@dataclass(frozen=True)
class Presence:
    """Ask the provider who is in the room's channel."""

    reason: str
    kind: ClassVar[ActionKind] = "presence"


@dataclass(frozen=True)
class Stop:
    """Stop session ``sid``; ``attempt`` counts the stops begun before, for a new intent id."""

    reason: str
    sid: str
    uid: str
    segment: int | None = None
    attempt: int = 0
    kind: ClassVar[ActionKind] = "stop"


@dataclass(frozen=True)
class Update:
    """Apply live-changeable ``options`` (subscriptions, layout) to session ``sid``."""

    reason: str
    sid: str
    options: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[ActionKind] = "update"


Action: TypeAlias = Reserve | Start | Adopt | Query | Presence | Stop | Update


def session_of(action: Action) -> str | None:
    """The sid of the session ``action`` acts on, if it acts on one."""
    match action:
        case Adopt(sid=sid) | Query(sid=sid) | Stop(sid=sid) | Update(sid=sid):
            return sid
    return None


def segment_of(action: Action) -> int | None:
    """The segment ``action`` is about, if it is about one."""
    match action:
        case Reserve(segment=segment) | Start(segment=segment) | Adopt(segment=segment):
            return segment
        case Stop(segment=segment):
            return segment
    return None
