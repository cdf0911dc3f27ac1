"""``recctl migrate`` and ``recctl migrate-store``: a database's schema, and a log moved.

``migrate`` applies the missing schema migrations to ``DATABASE_URL`` (SQLite or PostgreSQL);
the service does the same at start-up, so this is for doing it ahead of a deploy.

``migrate-store --from sqlite:///old.db --to postgresql://...`` copies a log, seq for seq and
payload text for payload text, into PostgreSQL, then rebuilds the destination's projections by
a replay. Each page of events is one transaction that first checks the destination still ends
where the copy left it, so an interrupted copy resumes from the destination's last seq, a
rerun copies nothing, and a destination that holds a different log (or that a service wrote to
meanwhile) is refused rather than mixed. The source is only read (a SQLite file is opened
read-only): the old deployment stays as it was until it is switched off.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import asyncpg
import click

from reconcilers.events import Event, Projection
from service.commands.common import UserError, load_settings, output_option, print_records
from service.commands.progress import progress
from service.store import backend_of
from service.store.postgres import sql as pg
from service.store.postgres.schema import applied_versions as pg_versions
from service.store.postgres.schema import migrate as pg_migrate
from service.store.sqlite.migrations import applied_versions as sqlite_versions
from service.store.sqlite.migrations import migrate_sqlite
from service.store.sqlite.schema import sqlite_path

DEFAULT_PAGE = 2000
"""Events per copy transaction: a page is ~1 MB of webhooks, committed (fsync) once."""

Advance = Callable[[int], None]


@dataclass(frozen=True)
class MigrateReport:
    backend: str
    applied: list[int]
    version: int


@dataclass(frozen=True)
class CopyReport:
    copied: int  # events written by this run
    events: int  # events in the destination's log now
    folded: int  # events the projections' rebuild folded
    seconds: float


async def migrate_database(url: str) -> MigrateReport:
    """Apply the missing migrations to the database ``url`` names."""
    backend = backend_of(url)
    if backend == "postgresql":
        conn = await _connect(url)
        try:
            applied = await pg_migrate(conn)
            versions = await pg_versions(conn)
        finally:
            await conn.close()
    else:
        path = Path(sqlite_path(url))
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as lite:
            lite.execute("PRAGMA busy_timeout=10000")
            applied = migrate_sqlite(lite)
            versions = sqlite_versions(lite)
    return MigrateReport(backend, applied, max(versions, default=0))


# -- the copy -------------------------------------------------------------------------------


class SqliteLog:
    """A SQLite log read in seq order, read-only, each payload as the text stored."""

    def __init__(self, url: str) -> None:
        path = Path(sqlite_path(url))
        if not path.exists():
            raise UserError(f"no event log at {path} (--from {url})")
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def count_after(self, seq: int) -> int:
        found: int = self._conn.execute(
            "SELECT COUNT(*) FROM events WHERE seq > ?", (seq,)
        ).fetchone()[0]
        return found

    def page(self, after: int, limit: int) -> list[tuple[Event, str]]:
        """Events after ``after``, with their payload's stored text."""
        from service.store.sqlite.schema import EVENT_COLUMNS, event_of

        rows = self._conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [(event_of(r), r[6]) for r in rows]

    def identity_at(self, seq: int) -> tuple[str, str] | None:
        found = self._conn.execute(
            "SELECT source, dedup_key FROM events WHERE seq = ?", (seq,)
        ).fetchone()
        return (found[0], found[1]) if found else None

    def close(self) -> None:
        self._conn.close()


async def copy_log(
    source_url: str,
    target_url: str,
    projections: Sequence[Projection],
    *,
    page: int = DEFAULT_PAGE,
    advance: Callable[[int, int], Advance] | None = None,
) -> CopyReport:
    """Copy what the target lacks of the source's log, then rebuild the target's projections.

    ``advance(total, done)`` opens the progress display for the ``total`` events to copy
    (``done`` already copied) and returns the function told of each committed page.
    """
    from service.store.postgres import PostgresStore

    if backend_of(source_url) != "sqlite":
        raise UserError("--from must be a SQLite log: sqlite:///path/to/recorder.db")
    if backend_of(target_url) != "postgresql":
        raise UserError("--to must be PostgreSQL: postgresql://user:password@host:port/db")
    started = time.perf_counter()
    source = SqliteLog(source_url)
    try:
        target = await PostgresStore.open(target_url, projections)  # migrates the target
        try:
            async with _connection(target_url) as conn:
                last = await conn.fetchval(pg.LAST_SEQ)
                _check_same_log(source, conn_last=last, target_identity=await _identity(conn, last))
                total = source.count_after(last)
                tell = advance(total, last) if advance else None
                copied = 0
                while events := source.page(last, page):
                    await _copy_page(conn, last, events)
                    last = events[-1][0].seq
                    copied += len(events)
                    if tell is not None:
                        tell(len(events))
            folded = await target.replay()
        finally:
            await target.close()
    finally:
        source.close()
    return CopyReport(copied, last, folded, time.perf_counter() - started)


def _check_same_log(source: SqliteLog, conn_last: int, target_identity: object) -> None:
    """The target must be empty, or end on the very event of the source at that seq."""
    if conn_last == 0:
        return
    if source.identity_at(conn_last) != target_identity:
        raise UserError(
            f"the destination's log ends at seq {conn_last} with an event the source does not "
            "have there: it holds another log (or a service wrote to it); nothing was copied"
        )


async def _identity(conn: asyncpg.Connection, seq: int) -> tuple[str, str] | None:
    found = await conn.fetchrow("SELECT source, dedup_key FROM events WHERE seq = $1", seq)
    return (found[0], found[1]) if found else None


async def _copy_page(
    conn: asyncpg.Connection, expected_last: int, events: Sequence[tuple[Event, str]]
) -> None:
    """One transaction under the append lock: still where we left it? then insert the page."""
    async with conn.transaction():
        await conn.execute(pg.TAKE_LOCK, pg.APPEND_LOCK)
        last = await conn.fetchval(pg.LAST_SEQ)
        if last != expected_last:
            raise UserError(
                f"the destination's log moved from seq {expected_last} to {last} during the "
                "copy (is a service writing to it?); rerun when nothing else writes to it"
            )
        columns = pg.event_columns([e for e, _ in events], [raw for _, raw in events])
        await conn.execute(pg.INSERT_EVENTS, *columns)


async def _connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(pg.postgres_dsn(url), timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise UserError(f"cannot connect to PostgreSQL: {exc}") from exc


@contextlib.asynccontextmanager
async def _connection(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await _connect(url)
    try:
        yield conn
    finally:
        await conn.close()


# -- the commands -----------------------------------------------------------------------------


@click.command()
@click.option("--url", help="the database (default: DATABASE_URL)")
@output_option()
def migrate(url: str | None, output: str) -> int:
    """Apply the missing schema migrations (the service also does it when it starts)."""
    settings = load_settings(quiet=True)
    target = url or settings.database_url
    try:
        report = asyncio.run(migrate_database(target))
    except ValueError as exc:
        raise UserError(str(exc), exit_code=2) from None
    if output == "table":
        done = ", ".join(map(str, report.applied)) or "none (up to date)"
        click.echo(f"{report.backend}: schema version {report.version}; applied {done}")
    else:
        print_records([asdict(report)], output)
    return 0


@click.command("migrate-store")
@click.option("--from", "source", required=True, help="the log to copy: sqlite:///path")
@click.option("--to", "target", required=True, help="where to: postgresql://user:pw@host/db")
@click.option("--page", default=DEFAULT_PAGE, show_default=True, help="events per transaction")
@output_option()
def migrate_store(source: str, target: str, page: int, output: str) -> int:
    """Copy an event log into PostgreSQL and rebuild its projections (idempotent, resumable)."""
    from service.runtime import default_projections

    load_settings(quiet=True)
    bars: list[contextlib.ExitStack] = []

    def open_bar(total: int, done: int) -> Advance:
        stack = contextlib.ExitStack()
        bars.append(stack)
        return stack.enter_context(progress(f"copying events after seq {done}", total=total))

    async def run() -> CopyReport:
        try:
            return await copy_log(
                source, target, default_projections(), page=page, advance=open_bar
            )
        finally:
            for stack in bars:
                stack.close()

    try:
        report = asyncio.run(run())
    except ValueError as exc:
        raise UserError(str(exc), exit_code=2) from None
    if output == "table":
        click.echo(
            f"copied {report.copied} events ({report.events} in the destination's log), "
            f"rebuilt the projections from {report.folded} events in {report.seconds:.1f}s"
        )
    else:
        print_records([asdict(report)], output)
    return 0
