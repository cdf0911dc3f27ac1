"""Events: the immutable facts of the append-only log, and the store port that keeps them.

The domain owns these types; ``service.store`` implements :class:`Store` for SQLite (and later
PostgreSQL). A store appends an event and updates every :class:`Projection` in one transaction,
and acknowledges only once that transaction is durable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Source = Literal["agora", "cloudflare", "storage", "api", "reconciler"]
JSON = dict[str, Any]


@dataclass(frozen=True)
class Fence:
    """The lease an append is made under: the store refuses the append (``StaleFence``) in the
    same transaction unless ``owner`` still holds ``shard`` with this fencing ``token`` and the
    lease has not expired. A replica paused past its lease thus cannot record an intent."""

    shard: int
    token: int
    owner: str


@dataclass(frozen=True)
class NewEvent:
    """An event before the store gives it a place in the log.

    ``dedup_key`` is unique per ``source``: Agora's ``noticeId``, a webhook id, an S3
    sequencer + key, an API idempotency key, or an action's intent id.
    """

    source: Source
    dedup_key: str
    type: str
    payload: JSON
    room: str | None = None
    session: str | None = None
    occurred_at: datetime | None = None
    received_at: datetime | None = None  # set by the store when None
    #: ``payload`` as the JSON text it arrived in, when there was one: stored as received
    #: (a webhook's body), which also spares the store encoding it again.
    raw: str | None = field(default=None, compare=False, repr=False)
    #: Set on a replica's intent appends: checked against the lease table by stores shared by
    #: replicas (PostgreSQL); an embedded single-process store (SQLite) has no leases to check.
    fence: Fence | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Event:
    """An event in the log: ``seq`` is its global, gap-free-on-commit position."""

    seq: int
    source: Source
    dedup_key: str
    type: str
    payload: JSON
    room: str | None
    session: str | None
    received_at: datetime
    occurred_at: datetime | None = None

    def to_json(self) -> JSON:
        return {
            "seq": self.seq,
            "source": self.source,
            "dedup_key": self.dedup_key,
            "type": self.type,
            "room": self.room,
            "session": self.session,
            "received_at": self.received_at.isoformat(),
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "payload": self.payload,
        }


@dataclass(frozen=True)
class Appended:
    """The answer to an append: the stored event, and whether it was already there."""

    event: Event
    duplicate: bool


@dataclass(frozen=True)
class Row:
    """One projection row: ``data`` is the folded state, ``room`` an index for lookups."""

    projection: str
    key: str
    room: str | None
    data: JSON
    seq: int = 0


class Projection(Protocol):
    """A pure fold of events into rows. No I/O: the store loads and saves the rows around it.

    ``keys`` names the rows an event touches; ``apply`` returns the new row (or ``None`` to leave
    it absent). Given the same events in the same order it must give the same rows, which is what
    makes ``replay`` equal to the live projections.
    """

    name: str

    def keys(self, event: Event) -> Sequence[str]: ...

    def apply(self, row: Row | None, event: Event) -> Row | None: ...


class Store(Protocol):
    """The narrow port every backend implements (SQLite now, PostgreSQL later)."""

    async def append(self, event: NewEvent) -> Appended:
        """Append durably (or find the earlier copy of a duplicate) and update projections."""
        ...

    async def read_log(
        self, since_seq: int = 0, room: str | None = None, limit: int = 1000
    ) -> list[Event]:
        """Events with ``seq > since_seq`` in order, optionally for one room."""
        ...

    async def get_row(self, projection: str, key: str) -> Row | None: ...

    async def rows(
        self, projection: str, room: str | None = None, after_key: str = "", limit: int = 1000
    ) -> list[Row]:
        """Rows of one projection ordered by key, optionally for one room, paged by key."""
        ...

    async def replay(self) -> int:
        """Rebuild every projection from the log; return the number of events folded."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot be reached (``/readyz``)."""
        ...

    async def close(self) -> None: ...


@dataclass
class Fold:
    """Folds events into rows in memory with a set of projections: the reference semantics.

    The SQL stores do the same work inside their transactions; tests compare them with this.
    """

    projections: Sequence[Projection]
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)

    def apply(self, event: Event) -> list[Row]:
        changed: list[Row] = []
        for projection in self.projections:
            for key in projection.keys(event):
                before = self.rows.get((projection.name, key))
                after = projection.apply(before, event)
                if after is None:
                    self.rows.pop((projection.name, key), None)
                else:
                    self.rows[(projection.name, key)] = after
                    changed.append(after)
        return changed
