"""The two ends of ``recctl migrate-store``: a log read in seq order, a log written seq for seq.

One :class:`LogSource` and one :class:`LogTarget` per backend, so a log moves between any two
(SQLite -> PostgreSQL to add replicas, PostgreSQL -> SQLite to go back to one process, or
between two databases of one kind). Events travel with their payload's text as stored, so a
webhook's body arrives byte for byte. A source is only read (a SQLite file is opened
read-only). A target is migrated before the copy; each page is one transaction that first
checks the target still ends where the copy left it, and a SQLite target is held under the
serve lock, so no service writes to it meanwhile.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol

import asyncpg

from reconcilers.events import Event
from service.commands.common import UserError
from service.store import backend_of
from service.store.postgres import sql as pg
from service.store.postgres.schema import migrate as pg_migrate
from service.store.serve_lock import AlreadyServing, hold_serve_lock
from service.store.sqlite import schema as lite
from service.store.sqlite.migrations import migrate_sqlite
from service.store.sqlite.replay import snapshot_seq

__all__ = ["LogSource", "LogTarget", "Page", "connect_postgres", "open_source", "open_target"]

Page = Sequence[tuple[Event, str]]
"""Events in seq order, each with its payload's text as stored."""

Identity = tuple[str, str] | None
"""An event's ``(source, dedup_key)``; ``None``: no event at that seq."""


class LogSource(Protocol):
    async def snapshot_seq(self) -> int:
        """0, or the seq a compaction's snapshot of the projections is as of (the events it
        deleted are in its export, the rows they made only in the snapshot)."""
        ...

    async def count_after(self, seq: int) -> int: ...
    async def page(self, after: int, limit: int) -> Page: ...
    async def identity_at(self, seq: int) -> Identity: ...
    async def close(self) -> None: ...


class LogTarget(Protocol):
    async def last_seq(self) -> int: ...
    async def identity_at(self, seq: int) -> Identity: ...
    async def write(self, expected_last: int, events: Page) -> None:
        """One transaction: refuse if the log no longer ends at ``expected_last``, else insert."""
        ...

    async def close(self) -> None: ...


def _moved(expected: int, last: int) -> UserError:
    return UserError(
        f"the destination's log moved from seq {expected} to {last} during the copy (is a "
        "service writing to it?); rerun when nothing else writes to it"
    )


# -- SQLite ---------------------------------------------------------------------------------


class SqliteSource:
    """A SQLite log, read-only."""

    def __init__(self, url: str) -> None:
        path = Path(lite.sqlite_path(url))
        if not path.exists():
            raise UserError(f"no event log at {path} (--from {url})")
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    async def snapshot_seq(self) -> int:
        if not self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'snapshot'"
        ).fetchone():
            return 0  # a file from before retention existed
        return snapshot_seq(self._conn)

    async def count_after(self, seq: int) -> int:
        found: int = self._conn.execute(
            "SELECT COUNT(*) FROM events WHERE seq > ?", (seq,)
        ).fetchone()[0]
        return found

    async def page(self, after: int, limit: int) -> Page:
        rows = self._conn.execute(
            f"{lite.SELECT_EVENTS} WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        ).fetchall()
        return [(lite.event_of(r), r[6]) for r in rows]

    async def identity_at(self, seq: int) -> Identity:
        found = self._conn.execute(
            "SELECT source, dedup_key FROM events WHERE seq = ?", (seq,)
        ).fetchone()
        return (found[0], found[1]) if found else None

    async def close(self) -> None:
        self._conn.close()


class SqliteTarget:
    """A SQLite file, created if need be, migrated, and held under the serve lock."""

    def __init__(self, url: str) -> None:
        path = Path(lite.sqlite_path(url))
        if not path.parent.is_dir():
            raise UserError(f"no directory {path.parent} for the destination (--to {url})")
        try:
            self._lock: IO[str] = hold_serve_lock(str(path))
        except AlreadyServing as exc:
            raise UserError(f"{exc}; stop it before copying into it") from None
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        migrate_sqlite(self._conn)

    async def last_seq(self) -> int:
        last: int = self._conn.execute(lite.LAST_SEQ).fetchone()[0]
        return last

    async def identity_at(self, seq: int) -> Identity:
        found = self._conn.execute(
            "SELECT source, dedup_key FROM events WHERE seq = ?", (seq,)
        ).fetchone()
        return (found[0], found[1]) if found else None

    async def write(self, expected_last: int, events: Page) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            last = conn.execute(lite.LAST_SEQ).fetchone()[0]
            if last != expected_last:
                raise _moved(expected_last, last)
            conn.executemany(lite.INSERT_EVENT, [lite.event_params(e, raw) for e, raw in events])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        self._conn.close()
        self._lock.close()


# -- PostgreSQL -----------------------------------------------------------------------------


async def connect_postgres(url: str) -> asyncpg.Connection:
    """One connection of the command's own; a failure is a ``UserError``."""
    try:
        return await asyncpg.connect(pg.postgres_dsn(url), timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise UserError(f"cannot connect to PostgreSQL: {exc}") from exc


class PostgresEnd:
    """A PostgreSQL log on one connection: a source (read in a snapshot's order of seq) or a
    target (migrated first; each page under the append lock, as the store writes)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @classmethod
    async def source(cls, url: str) -> PostgresEnd:
        conn = await connect_postgres(url)
        if not await conn.fetchval("SELECT to_regclass('events') IS NOT NULL"):
            await conn.close()
            raise UserError("no event log in the --from database (no events table)")
        return cls(conn)

    @classmethod
    async def target(cls, url: str) -> PostgresEnd:
        conn = await connect_postgres(url)
        try:
            await pg_migrate(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def snapshot_seq(self) -> int:
        return 0  # a PostgreSQL log is never compacted

    async def count_after(self, seq: int) -> int:
        found: int = await self._conn.fetchval("SELECT count(*) FROM events WHERE seq > $1", seq)
        return found

    async def page(self, after: int, limit: int) -> Page:
        rows = await self._conn.fetch(pg.READ_LOG, after, limit)
        return [(pg.event_of(r), r[6]) for r in rows]

    async def last_seq(self) -> int:
        last: int = await self._conn.fetchval(pg.LAST_SEQ)
        return last

    async def identity_at(self, seq: int) -> Identity:
        found = await self._conn.fetchrow(
            "SELECT source, dedup_key FROM events WHERE seq = $1", seq
        )
        return (found[0], found[1]) if found else None

    async def write(self, expected_last: int, events: Page) -> None:
        async with self._conn.transaction():
            await self._conn.execute(pg.TAKE_LOCK, pg.APPEND_LOCK)
            last = await self._conn.fetchval(pg.LAST_SEQ)
            if last != expected_last:
                raise _moved(expected_last, last)
            columns = pg.event_columns([e for e, _ in events], [raw for _, raw in events])
            await self._conn.execute(pg.INSERT_EVENTS, *columns)

    async def close(self) -> None:
        await self._conn.close()


# -- by URL ---------------------------------------------------------------------------------


async def open_source(url: str) -> LogSource:
    """The log ``url`` names, to read. Raises ``ValueError`` on a bad URL, ``UserError``."""
    if backend_of(url) == "postgresql":
        return await PostgresEnd.source(url)
    return SqliteSource(url)


async def open_target(url: str) -> LogTarget:
    """The log ``url`` names, migrated, to write. Raises ``ValueError``, ``UserError``."""
    if backend_of(url) == "postgresql":
        return await PostgresEnd.target(url)
    return SqliteTarget(url)
