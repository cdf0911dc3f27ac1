"""``recctl compact``: keep the event log to ``EVENT_RETENTION_DAYS``, losing nothing.

The log is the truth and grows for ever; the projections are what the service reads. A
compaction (SQLite; the service may run meanwhile):

1. folds the events older than the retention (those up to seq ``S``) into a **snapshot** of
   the projections as of ``S`` (from the previous snapshot, so each event is folded once);
   a replay then starts from it (``SqliteWriter.replay``);
2. **exports** the old events, as gzip JSON lines (one ``Event.to_json()`` a line), to a local
   directory or to a storage profile's bucket, written and made durable before anything is
   deleted;
3. **deletes** them, except the events of recordings still open (a recording the catalog has
   not stopped, a session not ended: their room, channel and sid), which stay whatever their
   age and go once they have closed. Deleting needs an export, or ``--discard`` said outright.

A crash between two steps leaves events that a later run exports (again, under the same file
name) and deletes; a replay meanwhile skips what the snapshot holds.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import click

from reconcilers.events import Event, Projection
from reconcilers.projections import CLOSED
from service.store.sqlite import schema as sql
from service.store.sqlite.replay import snapshot_fold

PAGE = 5000
DELETE_CHUNK = 20_000  # events deleted per transaction: the service's writer waits for none long


class Exporter(Protocol):
    """Where an export goes: ``put`` takes a finished local file and must be durable when it
    returns; it names where the file went."""

    @property
    def directory(self) -> Path:
        """Where the file is written before ``put`` (on the same file system, for a rename)."""
        ...

    def put(self, path: Path, name: str) -> str: ...


@dataclass(frozen=True)
class DirectoryExport:
    directory: Path

    def put(self, path: Path, name: str) -> str:
        final = self.directory / name
        path.replace(final)  # the same directory: the file was written and synced there
        _sync_directory(self.directory)
        return str(final)


@dataclass(frozen=True)
class BucketExport:
    """A storage profile's bucket (S3 or compatible), under ``<prefix>event-log/``."""

    client: Any
    bucket: str
    prefix: str

    def put(self, path: Path, name: str) -> str:
        key = f"{self.prefix}event-log/{name}"
        with path.open("rb") as body:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        path.unlink()
        return f"s3://{self.bucket}/{key}"

    @property
    def directory(self) -> Path:
        import tempfile

        return Path(tempfile.gettempdir())


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # a rename survives a crash
    finally:
        os.close(fd)


@dataclass
class CompactReport:
    cutoff: str
    snapshot_seq: int = 0
    folded: int = 0
    exported: int = 0
    kept_open: int = 0
    deleted: int = 0
    exported_to: list[str] = field(default_factory=list)
    seconds: float = 0.0


def compact_sqlite(
    path: str,
    projections: Sequence[Projection],
    retention_days: float,
    export: Exporter | None,
    *,
    discard: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
) -> CompactReport:
    """Snapshot, export and delete the events older than ``retention_days`` (see module)."""
    if export is None and not discard and not dry_run:
        raise ValueError("nothing is deleted without an export: give one, or discard")
    started = time.perf_counter()
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    report = CompactReport(cutoff=cutoff.isoformat())
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        upto = _last_old_seq(conn, cutoff)
        fold, since = snapshot_fold(conn, projections)
        report.snapshot_seq = max(since, upto)
        keep_rooms, keep_sessions = _open(conn)
        doomed = array("q")
        staging = export.directory if export is not None else Path(path).parent
        staging.mkdir(parents=True, exist_ok=True)
        partial = staging / f".events-{os.getpid()}.jsonl.gz.partial"
        with partial.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out:
            for page in _pages(conn, 0, report.snapshot_seq):
                for event in page:
                    if event.seq > since:
                        fold.apply(event)
                        report.folded += 1
                    if _kept(event, keep_rooms, keep_sessions):
                        report.kept_open += 1
                        continue
                    doomed.append(event.seq)
                    line = json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":"))
                    out.write(line.encode() + b"\n")
            out.flush()
        with partial.open("rb+") as synced:
            os.fsync(synced.fileno())
        if dry_run or not doomed or export is None:
            partial.unlink()
        if dry_run:
            report.exported = report.deleted = len(doomed)
            return report
        if doomed and export is not None:
            name = f"events-{doomed[0]:012d}-{doomed[-1]:012d}.jsonl.gz"
            report.exported_to.append(export.put(partial, name))
            report.exported = len(doomed)
        if upto > since:
            _write_snapshot(conn, fold.rows, upto)
        report.deleted = _delete(conn, doomed)
    finally:
        conn.close()
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _last_old_seq(conn: sqlite3.Connection, cutoff: datetime) -> int:
    """The last seq before the first event received at or after ``cutoff``: every event up to
    it is older (seq order and arrival order may differ by a commit's worth)."""
    young = conn.execute(
        "SELECT MIN(seq) FROM events WHERE received_at >= ?", (cutoff.isoformat(),)
    ).fetchone()[0]
    if young is not None:
        return int(young) - 1
    return int(conn.execute(sql.LAST_SEQ).fetchone()[0])


def _pages(conn: sqlite3.Connection, after: int, upto: int) -> Iterator[list[Event]]:
    query = f"{sql.SELECT_EVENTS} WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
    while page := conn.execute(query, (after, upto, PAGE)).fetchall():
        yield [sql.event_of(r) for r in page]
        after = page[-1][0]


def _open(conn: sqlite3.Connection) -> tuple[set[str], set[str]]:
    """What is still open: the rooms of recordings the catalog has not stopped (their API and
    reconciler events name the room), and the sids of those recordings and of every session
    that has not ended (a provider's events name the sid)."""
    rooms: set[str] = set()
    sessions: set[str] = set()
    query = "SELECT room, data FROM projections WHERE projection = ?"
    for room, data in conn.execute(query, ("recordings",)):
        rec = json.loads(data)
        if rec.get("stopped_ms") or rec.get("deleted_ms"):
            continue
        rooms.add(str(room))
        sessions.update(str(s) for s in rec.get("sids", []))
    for room, data in conn.execute(query, ("sessions",)):
        if room and not str(room).endswith(CLOSED):
            sessions.add(str(json.loads(data).get("sid")))
    return rooms, sessions


def _kept(event: Event, rooms: set[str], sessions: set[str]) -> bool:
    return (event.room is not None and event.room in rooms) or (
        event.session is not None and event.session in sessions
    )


def _write_snapshot(conn: sqlite3.Connection, rows: dict[tuple[str, str], Any], seq: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM snapshot_rows")
        conn.executemany(
            f"INSERT INTO snapshot_rows ({sql.ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            [sql.row_params(k, r) for k, r in rows.items()],
        )
        conn.execute(
            "INSERT INTO snapshot (id, seq, taken_at) VALUES (1, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, taken_at = excluded.taken_at",
            (seq, datetime.now(UTC).isoformat()),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _delete(conn: sqlite3.Connection, seqs: array[int]) -> int:
    """Delete ``seqs`` in chunks, each in a transaction that sets the guard row."""
    deleted = 0
    for i in range(0, len(seqs), DELETE_CHUNK):
        chunk = seqs[i : i + DELETE_CHUNK]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO compacting (id) VALUES (1)")
            conn.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in chunk])
            conn.execute("DELETE FROM compacting")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        deleted += len(chunk)
    return deleted


@click.command()
@click.option(
    "--retention-days",
    type=click.FloatRange(min=0, min_open=True),
    help="keep this many days of events (default: EVENT_RETENTION_DAYS)",
)
@click.option("--export-dir", type=click.Path(file_okay=False), help="export old events here")
@click.option("--export-storage", metavar="PROFILE", help="export to this storage profile")
@click.option("--discard", is_flag=True, help="delete old events without exporting them")
@click.option("--dry-run", is_flag=True, help="count what would go; change nothing")
def compact(
    retention_days: float | None,
    export_dir: str | None,
    export_storage: str | None,
    discard: bool,
    dry_run: bool,
) -> int:
    """Snapshot the projections, export the events older than the retention, delete them.

    The events of recordings still open are kept whatever their age. Nothing is deleted
    without an export (EVENT_EXPORT_DIR, --export-dir or --export-storage) unless --discard.
    """
    from service.commands.common import UserError, load_settings, print_records
    from service.config import is_postgres
    from service.runtime import default_projections
    from service.store.sqlite.schema import sqlite_path

    settings = load_settings(quiet=True)
    if is_postgres(settings.database_url):
        raise UserError("recctl compact works on a SQLite event log only (for now)", 2)
    days = retention_days if retention_days is not None else settings.event_retention_days
    if days is None:
        raise UserError("no retention: set EVENT_RETENTION_DAYS or pass --retention-days", 2)
    directory = export_dir or settings.event_export_dir
    exporter: Exporter | None = None
    if export_storage:
        profile = settings.storage_profiles.get(export_storage)
        if profile is None:
            raise UserError(f"no storage profile {export_storage!r}", 2)
        from service.storage.s3 import _client_for

        prefix = "".join(f"{p}/" for p in profile.prefix)
        exporter = BucketExport(_client_for(profile), profile.bucket, prefix)
    elif directory:
        exporter = DirectoryExport(Path(directory))
    if exporter is None and not discard and not dry_run:
        raise UserError(
            "nothing is deleted without an export: --export-dir, --export-storage"
            " or EVENT_EXPORT_DIR; or --discard to drop them",
            2,
        )
    report = compact_sqlite(
        sqlite_path(settings.database_url),
        default_projections(),
        days,
        exporter,
        discard=discard,
        dry_run=dry_run,
    )
    print_records([report.__dict__], "jsonl")  # one JSON line: what went where
    return 0
