"""The PostgreSQL store's statements and the codecs between its rows and the domain's values.

Batches go as arrays (``unnest``): one statement and one round trip for a whole group commit,
however many events or rows it holds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import asyncpg

from reconcilers.events import Event, Row, Source

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A connection of its own or one of the pool's: the statements run on either.
    Conn = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

__all__ = [
    "APPEND_LOCK",
    "Conn",
    "dumps",
    "event_of",
    "postgres_dsn",
    "row_of",
]

APPEND_LOCK = 0x7265_6363_746C_0002
"""The advisory lock every write transaction takes first and holds to its commit (see
``docs/postgresql.md``): it serialises numbering and commit, so the log's seqs become visible in
order, a reader that saw seq 11 can never later find 10, and the dedup check, the fold's reads
and the lease check see every earlier commit of every replica."""

EVENT_COLUMNS = "seq, source, dedup_key, room, session, type, payload, received_at, occurred_at"
ROW_COLUMNS = "projection, key, room, data, seq"

TAKE_LOCK = "SELECT pg_advisory_xact_lock($1)"
# Read in a statement of its own AFTER the lock: in READ COMMITTED each statement takes its
# snapshot when it starts, so a read in the locking statement could miss the commit just before.
LAST_SEQ = "SELECT COALESCE(max(seq), 0) FROM events"
FIND_EVENTS = (
    f"SELECT {', '.join('e.' + c.strip() for c in EVENT_COLUMNS.split(','))} "
    "FROM unnest($1::text[], $2::text[]) AS k(source, dedup_key) "
    "JOIN events AS e ON e.source = k.source AND e.dedup_key = k.dedup_key"
)
INSERT_EVENTS = (
    f"INSERT INTO events ({EVENT_COLUMNS}) "
    "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], "
    "$6::text[], $7::json[], $8::timestamptz[], $9::timestamptz[])"
)
# The lease an intent is made under, checked in the append's transaction. FOR SHARE: a takeover
# (an UPDATE of the row) waits for this commit, so the append is ordered before or after it,
# never beside. clock_timestamp(), not now(): now() is when the transaction began, before it
# waited for APPEND_LOCK, and a lease may expire meanwhile.
CHECK_FENCE = (
    "SELECT 1 FROM leases WHERE shard = $1 AND token = $2 AND owner = $3 "
    "AND expires_at > clock_timestamp() FOR SHARE"
)
FIND_ROWS = (
    f"SELECT {', '.join('p.' + c.strip() for c in ROW_COLUMNS.split(','))} "
    "FROM unnest($1::text[], $2::text[]) AS k(projection, key) "
    "JOIN projections AS p ON p.projection = k.projection AND p.key = k.key"
)
UPSERT_ROWS = (
    f"INSERT INTO projections ({ROW_COLUMNS}) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::json[], $5::bigint[]) "
    "ON CONFLICT (projection, key) DO UPDATE "
    "SET room = excluded.room, data = excluded.data, seq = excluded.seq"
)
DELETE_ROWS = (
    "DELETE FROM projections AS p USING unnest($1::text[], $2::text[]) AS k(projection, key) "
    "WHERE p.projection = k.projection AND p.key = k.key"
)
NOTIFY = "SELECT pg_notify('recctl_events', $1)"
"""Sent at commit with the batch's last seq: a replica that LISTENs learns of new events at once."""

# A batch's round trips are most of its time under the append lock, which every replica's
# writes wait for: the reads are one statement, the writes another.
LAST_SEQ_AND_DUPLICATES = (
    "SELECT m.last, "
    + ", ".join("d." + c.strip() for c in EVENT_COLUMNS.split(","))
    + " FROM (SELECT COALESCE(max(seq), 0) AS last FROM events) AS m LEFT JOIN ("
    + FIND_EVENTS
    + ") AS d ON true"
)
"""The log's last seq on every row, with the batch's duplicates (none: one row, no event)."""
WRITE_BATCH = (
    f"WITH new_events AS ({INSERT_EVENTS}), "
    f"upserted AS (INSERT INTO projections ({ROW_COLUMNS}) "
    "SELECT * FROM unnest($10::text[], $11::text[], $12::text[], $13::json[], $14::bigint[]) "
    "ON CONFLICT (projection, key) DO UPDATE "
    "SET room = excluded.room, data = excluded.data, seq = excluded.seq), "
    "deleted AS (DELETE FROM projections AS p "
    "USING unnest($15::text[], $16::text[]) AS k(projection, key) "
    "WHERE p.projection = k.projection AND p.key = k.key) "
    "SELECT pg_notify('recctl_events', $17)"
)
"""The new events, the rows that changed (upserted or deleted: never both for one key) and the
notification, in one statement: data-modifying CTEs all run, on the statement's snapshot."""

SELECT_EVENTS = f"SELECT {EVENT_COLUMNS} FROM events"
SELECT_ROWS = f"SELECT {ROW_COLUMNS} FROM projections"
READ_LOG = f"{SELECT_EVENTS} WHERE seq > $1 ORDER BY seq LIMIT $2"
READ_ROOM_LOG = f"{SELECT_EVENTS} WHERE seq > $1 AND room = $2 ORDER BY seq LIMIT $3"
GET_ROW = f"{SELECT_ROWS} WHERE projection = $1 AND key = $2"
ROWS = f"{SELECT_ROWS} WHERE projection = $1 AND key > $2 ORDER BY key LIMIT $3"
ROOM_ROWS = f"{SELECT_ROWS} WHERE projection = $1 AND room = $2 AND key > $3 ORDER BY key LIMIT $4"


def postgres_dsn(url: str) -> str:
    """Check a ``postgresql://`` (or ``postgres://``) URL and return it for asyncpg."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"expected postgresql://user:password@host:port/database, got {url!r}")
    if not parts.path.strip("/") and not parts.hostname:
        raise ValueError("a PostgreSQL URL names a host or a database: postgresql://host/db")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in the PostgreSQL URL: {exc}") from None
    return url


def password_of(url: str) -> str | None:
    """The password in a database URL, if any (the log redactor hides it)."""
    return urlsplit(url).password


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def event_of(r: asyncpg.Record, at: int = 0) -> Event:
    """The event in ``r``'s columns from ``at`` on (EVENT_COLUMNS' order)."""
    return Event(
        seq=r[at],
        source=cast(Source, r[at + 1]),
        dedup_key=r[at + 2],
        room=r[at + 3],
        session=r[at + 4],
        type=r[at + 5],
        payload=json.loads(r[at + 6]),
        received_at=r[at + 7],
        occurred_at=r[at + 8],
    )


def event_columns(events: Sequence[Event], raws: Sequence[str | None]) -> list[list[Any]]:
    """INSERT_EVENTS's arrays: a column each. ``raws``: each payload's text as received."""
    return [
        [e.seq for e in events],
        [e.source for e in events],
        [e.dedup_key for e in events],
        [e.room for e in events],
        [e.session for e in events],
        [e.type for e in events],
        [raw if raw is not None else dumps(e.payload) for e, raw in zip(events, raws, strict=True)],
        [e.received_at for e in events],
        [e.occurred_at for e in events],
    ]


def row_of(r: asyncpg.Record) -> Row:
    return Row(projection=r[0], key=r[1], room=r[2], data=json.loads(r[3]), seq=r[4])


def row_columns(rows: Sequence[tuple[tuple[str, str], Row]]) -> list[list[Any]]:
    """UPSERT_ROWS's arrays. A row is filed under the key its projection's ``keys()`` gave."""
    return [
        [k[0] for k, _ in rows],
        [k[1] for k, _ in rows],
        [r.room for _, r in rows],
        [dumps(r.data) for _, r in rows],
        [r.seq for _, r in rows],
    ]


def key_columns(keys: Sequence[tuple[str, str]]) -> list[list[str]]:
    return [[k[0] for k in keys], [k[1] for k in keys]]
