"""The fold both SQL backends run inside their write transactions, and the numbering of events.

Kept apart from :mod:`service.store.base` so that SQLite's writer process imports only this
(no logging, no async side) on its way to the writer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from reconcilers.events import Event, Fold, NewEvent, Projection, Row

__all__ = ["RowKey", "fold_batch", "numbered", "touched_keys", "utc"]

RowKey = tuple[str, str]
"""A projection row's address: ``(projection name, key)``."""


def touched_keys(projections: Sequence[Projection], events: Sequence[Event]) -> list[RowKey]:
    """Every row the events touch, each once, in first-touch order."""
    return list(dict.fromkeys((p.name, k) for e in events for p in projections for k in p.keys(e)))


def fold_batch(
    projections: Sequence[Projection],
    loaded: Mapping[RowKey, Row],
    events: Sequence[Event],
    touched: Sequence[RowKey] | None = None,
) -> dict[RowKey, Row | None]:
    """Fold ``events`` in order over the ``loaded`` rows with the domain's :class:`Fold`; return
    the rows that changed (``None``: deleted), in ``touched`` order (:func:`touched_keys`, when
    the caller has it already). A row handed back as the same object is unchanged and needs no
    write."""
    fold = Fold(projections, dict(loaded))
    for event in events:
        fold.apply(event)
    changed: dict[RowKey, Row | None] = {}
    for key in touched_keys(projections, events) if touched is None else touched:
        after, before = fold.rows.get(key), loaded.get(key)
        if after is not before:
            changed[key] = after
    return changed


def utc(when: datetime) -> datetime:
    """Naive times are taken as UTC; every stored time is UTC."""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def numbered(pending: NewEvent, seq: int) -> Event:
    """The event ``pending`` becomes once the log gives it ``seq``."""
    assert pending.received_at is not None  # the store stamps it when the append is queued
    return Event(
        seq=seq,
        source=pending.source,
        dedup_key=pending.dedup_key,
        type=pending.type,
        payload=pending.payload,
        room=pending.room,
        session=pending.session,
        received_at=utc(pending.received_at),
        occurred_at=utc(pending.occurred_at) if pending.occurred_at else None,
    )
