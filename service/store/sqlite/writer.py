"""The SQLite write side: one connection, one thread, one call per group-commit batch.

Everything here is synchronous and runs on the store's writer thread. A whole batch (find the
duplicates, number the new events, insert them, fold them into the projections, commit) is ONE
call from the event loop, so a commit costs one thread hop plus one fsync. Doing the same
statement by statement through aiosqlite costs a thread round trip per statement (three per
cursor), which measured 2-6 ms per single-event commit here instead of well under one.

Projections are pure functions, so running them on this thread is safe; it also keeps the fold
(and a whole replay) off the event loop.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconcilers.events import Appended, Event, NewEvent, Projection, Row
from service.store.errors import StoreError
from service.store.fold import fold_batch, numbered, touched_keys
from service.store.sqlite import replay
from service.store.sqlite import schema as sql
from service.store.sqlite.migrations import migrate_sqlite

MMAP_BYTES = 1 << 30
"""The writer reads the file through a memory map (up to 1 GB of it). Every append looks up
its dedup key, and every fold reads and rewrites projection rows, in B-trees that grow with
the log: with a million events, most of those pages are not in SQLite's own cache (2 MB), and
each miss was a ``pread`` into it. Mapped, a miss is a memory read of the OS's page cache.
Measured (``tests/bench/bench_history.py``, 1,000,000 events against 20,000): SQLite's share
of an append 69 -> 58 µs against 45 -> 51 on the small file. A larger page cache instead
(32-128 MB) did not help. The mapped pages are the file's, shared with the page cache: they
count in the writer's RSS, not in its anonymous memory."""
_KNOWN_BYTES = 4 << 20
_Key = tuple[str, str]


@dataclass
class Checkpoints:
    """The background checkpoints so far (the store reads them for its stats and log)."""

    done: int = 0
    failed: int = 0
    last_seconds: float = 0.0
    last_error: str = ""


class SqliteWriter:
    """Owns the write connection. Call every method from the same (writer) thread."""

    def __init__(
        self, path: str | Path, projections: Sequence[Projection], wal_bytes: int = 4 << 20
    ) -> None:
        self._path = path
        self._projections = tuple(projections)
        self._wal_bytes = wal_bytes
        self._conn: sqlite3.Connection | None = None
        # The background checkpoint runs beside the writer, in the writer's process: a
        # checkpoint in the service's process once held a point read on its event loop for
        # as long as the checkpoint took (26 s when this VM's disk stalled).
        self._checkpointer = Checkpointer(path)
        self._checkpointing: threading.Thread | None = None
        self._catch_up = False  # a background checkpoint finished: the next write completes it
        self._low_space = False  # a commit failed for want of space: truncate the WAL at each
        self.checkpoints = Checkpoints()
        self.last_sync_seconds = 0.0  # the last write's COMMIT: the WAL's fsync, nearly all
        self._known = KnownState()

    @property
    def path(self) -> str:
        return str(self._path)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the writer connection is closed")
        return self._conn

    def open(self) -> None:
        """WAL (readers never block the writer) and ``synchronous=FULL`` (fsync every commit)."""
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"could not switch {self._path} to WAL (journal_mode={mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            # Commits never checkpoint: a checkpoint (copy the WAL into the file, fsync it) in a
            # commit made that batch wait tens of ms. A Checkpointer does it aside.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            # A WAL started over is cut back to this size, so its size tells how much is new.
            conn.execute(f"PRAGMA journal_size_limit={int(self._wal_bytes)}")
            migrate_sqlite(conn)  # the schema, versioned: sqlite/migrations.py
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def close(self) -> None:
        if self._checkpointing is not None:
            self._checkpointing.join()
        self._checkpointer.close()
        if self._conn is not None:
            self._conn.close()  # the last connection: SQLite checkpoints the rest
            self._conn = None

    def _maybe_checkpoint(self) -> None:
        """Start a background checkpoint when the WAL has grown past its bound: one at a time,
        and not before a write has completed the last one (two would find each other busy)."""
        if self._catch_up or (self._checkpointing is not None and self._checkpointing.is_alive()):
            return
        try:
            size = os.stat(f"{self._path}-wal").st_size
        except OSError:
            return
        if size > self._wal_bytes:
            self._checkpointing = threading.Thread(
                target=self._checkpoint_aside, name="sqlite-checkpoint", daemon=True
            )
            self._checkpointing.start()

    def _checkpoint_aside(self) -> None:
        started = time.perf_counter()
        try:
            self._checkpointer.checkpoint()
        except sqlite3.Error as exc:  # the WAL grows until one works
            self.checkpoints.failed += 1
            self.checkpoints.last_error = repr(exc)
            return
        self.checkpoints.done += 1
        self.checkpoints.last_seconds = time.perf_counter() - started
        self._catch_up = True

    def checkpoint(self) -> tuple[int, int]:
        """Checkpoint now, after any under way: ``(frames in the WAL, frames copied)``."""
        if self._checkpointing is not None:
            self._checkpointing.join()
        return self._checkpointer.checkpoint()

    def synchronous(self) -> int:
        """The connection's ``PRAGMA synchronous`` (2 = FULL); tests check it."""
        value: int = self.conn.execute("PRAGMA synchronous").fetchone()[0]
        return value

    def write(self, batch: Sequence[NewEvent]) -> tuple[list[Appended], list[Event]]:
        """One transaction: answer every append (duplicates included) and return the new events.

        After a background checkpoint, it first copies into the file the few frames written
        since, so that this transaction starts the WAL over (a checkpoint that runs beside a
        busy writer never catches up with it alone). Then it may start the next one.
        """
        try:
            results = self._write(batch)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                self._low_space = True
                self._reclaim_wal()
            raise
        finally:
            self._maybe_checkpoint()
        if self._low_space:
            self._low_space = not (self._reclaim_wal() and self._space_left())
        return results

    def _reclaim_wal(self) -> bool:
        """Copy the WAL back into the file and truncate it to nothing; ``False`` if it failed.

        After a commit failed for want of space, this runs after every commit until the disk
        has room again: each commit grows the WAL (~16 KB for one event), and on a 3 MB volume
        with 1 MB freed the WAL took all of it before a checkpoint ran, so intake never
        recovered (issue 20). Truncated at each commit, the WAL holds one commit at most."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error:
            return False
        return True

    def _space_left(self) -> bool:
        """Room for the WAL to grow to its checkpoint bound twice over."""
        try:
            stat = os.statvfs(os.path.dirname(os.path.abspath(self._path)))
        except OSError:
            return False
        return stat.f_bavail * stat.f_frsize > 2 * self._wal_bytes

    def _write(self, batch: Sequence[NewEvent]) -> tuple[list[Appended], list[Event]]:
        conn = self.conn
        catch_up, self._catch_up = self._catch_up, False
        if catch_up:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: seq numbering needs it
        known = self._known
        try:
            known.check(conn)
            keys = list(dict.fromkeys((e.source, e.dedup_key) for e in batch))
            found = conn.execute(sql.FIND_EVENTS, (sql.pairs(keys),)).fetchall()
            seen: dict[_Key, Event] = {(e.source, e.dedup_key): e for e in map(sql.event_of, found)}
            seq = known.last_seq if known.last_seq is not None else known.read_last_seq(conn)
            results: list[Appended] = []
            new: list[Event] = []
            params: list[tuple[object, ...]] = []
            for pending in batch:
                key = (pending.source, pending.dedup_key)
                if key in seen:
                    results.append(Appended(seen[key], duplicate=True))
                    continue
                seq += 1
                event = numbered(pending, seq)
                seen[key] = event
                new.append(event)
                params.append(sql.event_params(event, pending.raw))
                results.append(Appended(event, duplicate=False))
            written: dict[_Key, tuple[Row | None, int]] = {}
            if new:
                conn.executemany(sql.INSERT_EVENT, params)
                written = self._fold(conn, new)
            syncing = time.perf_counter()
            conn.execute("COMMIT")
            self.last_sync_seconds = time.perf_counter() - syncing
        except BaseException:
            known.forget()  # what this transaction read or meant to write is not on disk
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        known.committed(seq, written)
        return results, new

    def _fold(
        self, conn: sqlite3.Connection, events: Sequence[Event]
    ) -> dict[_Key, tuple[Row | None, int]]:
        """Load every row the events touch, fold in seq order in memory (the shared
        :func:`~service.store.fold.fold_batch`), write back the changes.

        Returns each row it changed as it is once the transaction commits (``None``: deleted),
        with the size of its JSON.
        """
        touched = touched_keys(self._projections, events)
        if not touched:
            return {}
        loaded = self._known.rows(conn, touched)
        folded = fold_batch(self._projections, loaded, events, touched)
        # One that keeps its room is updated in place: the room index is left alone, a page
        # less in each commit.
        upserts, updates, deletes = [], [], []
        changed: dict[_Key, tuple[Row | None, int]] = {}
        for k, after in folded.items():
            before = loaded.get(k)
            if after is None:
                deletes.append(k)
                changed[k] = (None, 0)
            elif before is not None and before.room == after.room:
                updates.append(params := sql.row_update_params(k, after))
                changed[k] = (after, len(params[0]))
            else:
                upserts.append(params := sql.row_params(k, after))
                changed[k] = (after, len(params[3]))
        if upserts:
            conn.executemany(sql.UPSERT_ROW, upserts)
        if updates:
            conn.executemany(sql.UPDATE_ROW, updates)
        if deletes:
            conn.executemany(sql.DELETE_ROW, deletes)
        return changed

    def replay(self) -> int:
        """Delete every projection row and refold the log in seq order, in one transaction:
        from the snapshot ``recctl compact`` took (the rows as of its seq), when there is one,
        else from the start. A long log is folded by worker processes, a group of projections
        each (:mod:`service.store.sqlite.replay`). Returns the events folded."""
        conn = self.conn
        self._known.forget()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM projections")
            pending = conn.execute(sql.LAST_SEQ).fetchone()[0] - replay.snapshot_seq(conn)
            workers = replay.worker_count(pending, len(self._projections))  # pending: a bound
            if workers > 1:
                count, rows = replay.fold_in_workers(self.path, self._projections, workers)
            else:
                fold, last = replay.snapshot_fold(conn, self._projections)
                count = replay.fold_log(conn, fold, last)
                rows = [sql.row_params(k, r) for k, r in fold.rows.items()]
            conn.executemany(sql.UPSERT_ROW, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return count


class KnownState:
    """What the last commits left in the file, kept so the next write need not read it again:
    the last seq, and the projection rows they loaded or wrote (``None``: known to be absent).

    A write reads and decodes every row its events touch, and most touch the rows the last
    writes touched (a session's row, its room's). This writer is the file's only writer while
    ``PRAGMA data_version`` stays the same; when another connection (``recctl`` on the same
    file, say) commits, it changes, and everything known is forgotten. Bounded by an estimate
    of the memory the rows take (a recording's row grows with its files): the rows written
    longest ago go first, and a row too big to be worth keeping is read each time.
    """

    ENTRY_BYTES = 400
    """What a kept row costs beside its data (the row, its key, the slot); a known absence too."""
    PER_JSON_BYTE = 6
    """A row decoded takes 3.1-6.4 times its JSON (tracemalloc, the five projections' rows)."""

    def __init__(self, budget: int = _KNOWN_BYTES) -> None:
        self.budget = budget
        self.size = 0
        self.last_seq: int | None = None
        self._rows: dict[_Key, tuple[Row | None, int]] = {}
        self._version: int | None = None

    def check(self, conn: sqlite3.Connection) -> None:
        """Call with the write lock held: forget everything if another connection committed."""
        version: int = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:
            self.forget()
            self._version = version

    def forget(self) -> None:
        self.last_seq = None
        self._rows.clear()
        self.size = 0

    def read_last_seq(self, conn: sqlite3.Connection) -> int:
        seq: int = conn.execute(sql.LAST_SEQ).fetchone()[0]
        self.last_seq = seq
        return seq

    def rows(self, conn: sqlite3.Connection, keys: Sequence[_Key]) -> dict[_Key, Row]:
        """The rows under ``keys`` that exist: what is known, the rest read from the file."""
        known = self._rows
        out: dict[_Key, Row] = {}
        missing = []
        for k in keys:
            if k not in known:
                missing.append(k)
            elif (row := known[k][0]) is not None:
                out[k] = row
        if missing:
            found = conn.execute(sql.FIND_ROWS, (sql.pairs(missing),)).fetchall()
            read = {(r[0], r[1]): (sql.row_of(r), len(r[3])) for r in found}
            for k in missing:
                row, size = read.get(k, (None, 0))
                self._keep(k, row, size)
                if row is not None:
                    out[k] = row
        self._evict()
        return out

    def committed(self, last_seq: int, changed: dict[_Key, tuple[Row | None, int]]) -> None:
        """The write is on disk: the log ends at ``last_seq``, ``changed`` rows are as given."""
        self.last_seq = last_seq
        for k, (row, size) in changed.items():
            self._keep(k, row, size)
        self._evict()

    def _keep(self, key: _Key, row: Row | None, size: int) -> None:
        if (old := self._rows.pop(key, None)) is not None:
            self.size -= self.cost(old[1])
        if self.cost(size) > self.budget // 16:
            return  # re-inserted last (eviction goes by the last write); a giant is not kept
        self._rows[key] = (row, size)
        self.size += self.cost(size)

    def cost(self, json_size: int) -> int:
        """The memory a kept row of ``json_size`` bytes of JSON takes, by estimate."""
        return self.ENTRY_BYTES + self.PER_JSON_BYTE * json_size

    def _evict(self) -> None:
        known = self._rows
        while self.size > self.budget:
            key = next(iter(known))
            self.size -= self.cost(known.pop(key)[1])


class Checkpointer:
    """Copies the WAL back into the database file on its own connection and thread.

    PASSIVE: it never blocks the writer or readers. It copies the bulk; the writer's next
    transaction copies the rest and starts the WAL over.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def checkpoint(self) -> tuple[int, int]:
        """``(frames in the WAL, frames copied)``; opens the connection on first use."""
        if self._conn is None:  # used by one thread at a time, not always the same one
            self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout=10000")
        # fetchall, not fetchone: a statement left unfinished holds a read lock on the WAL.
        [(_busy, frames, copied)] = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return frames, copied

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

