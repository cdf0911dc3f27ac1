"""``recctl migrate`` and ``recctl migrate-store``: a database's schema, and a log moved.

``migrate`` applies the missing schema migrations to ``DATABASE_URL`` (SQLite or PostgreSQL);
the service does the same at start-up, so this is for doing it ahead of a deploy.

``migrate-store --from URL --to URL`` copies a log, seq for seq and payload text for payload
text, between any two databases (SQLite -> PostgreSQL to add replicas, PostgreSQL -> SQLite to
go back to one process), then rebuilds the destination's projections by a replay. Each page of
events is one transaction that first checks the destination still ends where the copy left it,
so an interrupted copy resumes from the destination's last seq, a rerun copies nothing, and a
destination that holds a different log (or that a service wrote to meanwhile) is refused rather
than mixed. The source is only read (a SQLite file is opened read-only): the old deployment
stays as it was until it is switched off. A SQLite destination is held under the serve lock for
the copy, so a ``recctl serve`` on it is refused meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from reconcilers.events import Projection
from service.commands.common import UserError, load_settings, output_option, print_records
from service.commands.log_ends import LogSource, connect_postgres, open_source, open_target
from service.commands.progress import progress
from service.store import backend_of, open_store
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
        conn = await connect_postgres(url)
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


async def copy_log(
    source_url: str,
    target_url: str,
    projections: Sequence[Projection],
    *,
    page: int = DEFAULT_PAGE,
    advance: Callable[[int, int], Advance] | None = None,
) -> CopyReport:
    """Copy what the target lacks of the source's log, then rebuild the target's projections.
    Either end may be SQLite or PostgreSQL (:mod:`service.commands.log_ends`).

    ``advance(total, done)`` opens the progress display for the ``total`` events to copy
    (``done`` already copied) and returns the function told of each committed page.
    """
    backend_of(source_url), backend_of(target_url)  # a bad URL is a ValueError before anything
    if source_url == target_url:
        raise UserError("--from and --to name the same log: nothing to copy")
    started = time.perf_counter()
    source = await open_source(source_url)
    try:
        if snapshot := await source.snapshot_seq():
            raise UserError(
                f"the source was compacted (recctl compact): the rows of its events up to seq "
                f"{snapshot} live only in its snapshot, which a copy cannot carry, and a replay "
                "at the destination would miss them; nothing was copied"
            )
        target = await open_target(target_url)  # migrated
        try:
            last = await target.last_seq()
            await _check_same_log(source, last, await target.identity_at(last))
            total = await source.count_after(last)
            tell = advance(total, last) if advance else None
            copied = 0
            while events := await source.page(last, page):
                await target.write(last, events)
                last = events[-1][0].seq
                copied += len(events)
                if tell is not None:
                    tell(len(events))
        finally:
            await target.close()
    finally:
        await source.close()
    store = await open_store(target_url, projections)
    try:
        folded = await store.replay()
    finally:
        await store.close()
    return CopyReport(copied, last, folded, time.perf_counter() - started)


async def _check_same_log(source: LogSource, target_last: int, target_identity: object) -> None:
    """The target must be empty, or end on the very event of the source at that seq."""
    if target_last == 0:
        return
    if await source.identity_at(target_last) != target_identity:
        raise UserError(
            f"the destination's log ends at seq {target_last} with an event the source does "
            "not have there: it holds another log (or a service wrote to it); nothing was copied"
        )


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
@click.option(
    "--from", "source", required=True, help="the log to copy: sqlite:///path or postgresql://..."
)
@click.option(
    "--to", "target", required=True, help="where to: postgresql://user:pw@host/db or sqlite:///path"
)
@click.option("--page", default=DEFAULT_PAGE, show_default=True, help="events per transaction")
@output_option()
def migrate_store(source: str, target: str, page: int, output: str) -> int:
    """Copy an event log to another database (SQLite or PostgreSQL, either way) and rebuild its
    projections there (idempotent, resumable)."""
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
