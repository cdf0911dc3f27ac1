"""The embedded event log on one SQLite file: WAL, ``synchronous=FULL``, group commit.

``append`` queues the event and waits. Everything pending (up to ``batch_cap``) goes, as one
call, to the :class:`SqliteWriter` (on its own thread, or in a child process:
:mod:`.host`): ONE transaction, ONE fsync for the whole batch. Only after the commit are
the callers' futures resolved, so an acknowledgement always means "on disk". While one batch
commits the next one gathers, so batches grow with the load by themselves; and two batches
leave at least ``batch_interval`` apart (1 ms), so that under load the disk sees fewer, fuller
commits instead of one per webhook (``DEFAULT_BATCH_INTERVAL``). After a quiet spell an append
leaves at once.

No task stands between a request and the writer. The appends of one turn of the event loop
leave together at its end, and with the writer process a batch's answer resolves its appends
(and sends the next batch) in the pipe's own callback. Under load every turn of the loop waits
behind all the requests that came meanwhile, so these turns are the latency: a writer task and
a task per batch made five of them between a request and its answer, where there are now two.

Reads never wait for the writer (WAL). A point read (one row, or one room's rows) has a
connection and a thread of its own, so that it never queues behind a scan; scans (the log,
every row of a projection) go through aiosqlite's connection. No read runs on the event loop:
SQLite can wait inside one (see ``_point_read``)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite

from reconcilers.events import Appended, Event, NewEvent, Projection, Row
from service.store.base import BatchReport, StoreClosed, StoreError, StoreStats, log
from service.store.errors import AppendTimedOut
from service.store.sqlite import schema as sql
from service.store.sqlite.host import ProcessHost, ThreadHost, WriteResult, WriterHost
from service.store.sqlite.schema import sqlite_path
from service.store.sqlite.writer import Checkpoints

__all__ = ["DEFAULT_BATCH_CAP", "DEFAULT_CHECKPOINT_BYTES", "SqliteStore", "sqlite_path"]

DEFAULT_BATCH_CAP = 512
"""Most appends in one transaction: bounds a batch's latency and memory, not its benefit."""

DEFAULT_CHECKPOINT_BYTES = 4 << 20
"""A WAL larger than this is checkpointed in the background (SQLite's own default is ~4 MB)."""

DEFAULT_BATCH_INTERVAL = 0.001
"""Seconds between two batches at least: a batch waits out what is left of the interval since
the one before, so no append waits longer than this for it, and one that comes after a quiet
spell leaves at once. Without it, at 2,500 webhooks/s (half the intake's closed-loop rate on
this 2-core VM) the writer committed 1,400 times a second, 1.8 events each, and every commit
rewrote the same B-tree pages: 4,300 disk writes/s, 50 MB/s and 1,400 flushes/s, with the
writer ~75% busy. With 1 ms: 770 commits/s, 2,400 writes/s, 33 MB/s, ~25% less CPU for the
service and its writer together, the same p50 and a lower p99 (3 runs each). Under a closed
loop, where batches are ~25 events and ~5 ms apart anyway, it changes nothing."""

PIPELINE_DEPTH = 4
"""Batches sent to the writer before the first is answered: the next one waits at the writer
when a commit ends, instead of waiting for the event loop to hear of it and send it. On the
intake bench (interleaved runs, writer process, measured when a task still carried each
batch) 4 gave ~20% more closed-loop throughput than 2 and a lower paced p50 and p99; 6 gave
less than 4."""

SLOW_READ_SECONDS = 0.25
"""A point read slower than this was SQLite waiting, not reading: logged."""

SLOW_SYNC_SECONDS = 0.25
"""A commit's fsync slower than this is the disk stalling (every webhook in it waited): logged.
This VM's disk measured p50 0.2 ms, and stalls of 0.1-1.5 s a few times a minute."""

DEFAULT_APPEND_TIMEOUT = 10.0
"""Seconds an append may wait to be durable before its caller is told to retry (503)."""

_Pending = tuple[NewEvent, "asyncio.Future[Appended]"]


class SqliteStore:
    """The :class:`reconcilers.events.Store` on SQLite. Open it with :meth:`open`."""

    def __init__(
        self,
        host: WriterHost,
        path: str,
        reader: aiosqlite.Connection,
        point: sqlite3.Connection,
        batch_cap: int,
        checkpoint_bytes: int = DEFAULT_CHECKPOINT_BYTES,
        batch_interval: float = DEFAULT_BATCH_INTERVAL,
        append_timeout: float = DEFAULT_APPEND_TIMEOUT,
    ) -> None:
        self._host = host
        self._append_timeout = append_timeout
        self._sent_at: deque[float] = deque()  # when each batch in flight left (loop time)
        self._failing_since: float | None = None  # the first failed batch since a commit
        self._reader = reader
        self._point = point
        self._batch_cap = batch_cap
        self._loop = asyncio.get_running_loop()
        self._pending: deque[_Pending] = deque()  # appends not sent yet
        self._retries: deque[_Pending] = deque()  # a failed batch's appends, to send one by one
        self._in_flight = 0  # batches sent, not answered yet
        self._flush_soon = False  # a _flush is scheduled
        self._interval = batch_interval
        self._last_sent = -batch_interval  # when the last batch left (loop time)
        self._timer: asyncio.TimerHandle | None = None  # a _flush at the interval's end
        self._held = False  # a replay holds back new batches
        self._quiet = asyncio.Event()  # see _note_quiet
        self._quiet.set()
        self._replaying = asyncio.Lock()
        self._closing = False
        self._closed = False
        self.stats = StoreStats()
        self._wal_path = f"{path}-wal"
        self._point_executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-point")
        self._checkpoint_failures = 0

    @classmethod
    async def open(
        cls,
        path: str | Path,
        projections: Sequence[Projection] = (),
        *,
        batch_cap: int = DEFAULT_BATCH_CAP,
        checkpoint_bytes: int = DEFAULT_CHECKPOINT_BYTES,
        batch_interval: float = DEFAULT_BATCH_INTERVAL,
        writer_process: bool = False,
        append_timeout: float = DEFAULT_APPEND_TIMEOUT,
    ) -> SqliteStore:
        """Create the file and schema if needed, connect both sides, start the writer.

        ``batch_interval``: seconds between two batches at least (see ``DEFAULT_BATCH_INTERVAL``).
        ``writer_process``: run the writer in a child process (see :mod:`.host`).
        """
        path = str(path)
        host_type = ProcessHost if writer_process else ThreadHost
        host = host_type(path, projections, checkpoint_bytes)
        try:
            await host.open()
            reader = await aiosqlite.connect(path, isolation_level=None)
        except BaseException:
            await host.close()
            raise
        try:
            await reader.execute("PRAGMA busy_timeout=10000")
            await reader.execute("PRAGMA query_only=1")
            point = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except BaseException:
            await reader.close()
            await host.close()
            raise
        point.execute("PRAGMA busy_timeout=1000").fetchall()  # WAL readers are next to never busy
        point.execute("PRAGMA query_only=1").fetchall()
        return cls(
            host, path, reader, point, batch_cap, checkpoint_bytes, batch_interval, append_timeout
        )

    @property
    def host(self) -> WriterHost:
        """Where the writer runs (tests look at the child process)."""
        return self._host

    # -- writes -----------------------------------------------------------------------------

    async def append(self, event: NewEvent) -> Appended:
        """Queue for the next group commit; return once it is durable, raise if it failed."""
        if self._closing:
            raise StoreClosed("the store is closed")
        if event.received_at is None:
            event = replace(event, received_at=datetime.now(UTC))
        future: asyncio.Future[Appended] = self._loop.create_future()
        self._pending.append((event, future))
        self._quiet.clear()
        if not self._flush_soon:  # once this turn's appends are all queued: one batch
            self._flush_soon = True
            self._loop.call_soon(self._flush)
        deadline = self._loop.call_later(self._append_timeout, _expire, future, self)
        try:
            return await future
        finally:
            deadline.cancel()

    def write_problem(self) -> str | None:
        """What keeps appends from getting through now (``WriteHealth``), or ``None``."""
        now = self._loop.time()
        if self._sent_at and now - self._sent_at[0] > self._append_timeout:
            return f"a commit has been under way for {now - self._sent_at[0]:.0f} s"
        if self._failing_since is not None:
            return f"no commit has succeeded for {now - self._failing_since:.0f} s"
        return None

    def _flush(self) -> None:
        """Send batches while the pipeline has room and the batch interval allows: a failed
        batch's appends first, one by one (a poison event then fails alone), then everything
        pending, ``batch_cap`` at a time. Called when appends were queued, whenever a batch is
        answered, and at the end of an interval that held one back: no task in between."""
        self._flush_soon = False
        while (self._retries or self._pending) and not self._held:
            if self._in_flight >= PIPELINE_DEPTH:
                break
            due = self._last_sent + self._interval
            if (now := self._loop.time()) < due:
                if self._timer is None:
                    self._timer = self._loop.call_at(due, self._flush_on_time)
                break
            self._last_sent = now
            if self._retries:
                batch = [self._retries.popleft()]
            else:
                take = min(len(self._pending), self._batch_cap)
                batch = [self._pending.popleft() for _ in range(take)]
            self._in_flight += 1
            self._sent_at.append(now)
            done = partial(self._answered, batch, time.perf_counter())
            try:
                self._host.submit([e for e, _ in batch], done)
            except Exception as exc:  # could not even be sent: it failed
                self._loop.call_soon(done, exc)
        self._note_quiet()

    def _flush_on_time(self) -> None:
        self._timer = None
        self._flush()

    def _answered(
        self, batch: list[_Pending], started: float, outcome: WriteResult | BaseException
    ) -> None:
        self._in_flight -= 1
        if self._sent_at:
            self._sent_at.popleft()  # answered in the order sent
        if isinstance(outcome, BaseException):
            self.stats.failed_batches += 1
            if self._failing_since is None:
                self._failing_since = self._loop.time()
            if len(batch) == 1:
                log.error("append failed", error=repr(outcome), dedup_key=batch[0][0].dedup_key)
                _fail(batch[0][1], outcome)
            else:
                log.warning("batch failed; retrying its appends one by one", size=len(batch))
                self._retries.extend(batch)
        else:
            results, new, checkpoints, sync = outcome
            self._failing_since = None
            took = time.perf_counter() - started
            self.stats.committed(BatchReport(len(batch), new, took, sync))
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            self._note(checkpoints, sync)
        self._flush()

    def _note_quiet(self) -> None:
        """Quiet: no batch in flight, and none to send (or sending is held for a replay)."""
        if self._in_flight == 0 and (self._held or not (self._pending or self._retries)):
            self._quiet.set()
        else:
            self._quiet.clear()

    def _note(self, checkpoints: Checkpoints, sync: float) -> None:
        """Count the writer's background checkpoints; say when one was slow or failed, and
        when the disk took long to make a commit durable (every webhook in it waited)."""
        if sync > SLOW_SYNC_SECONDS:
            log.warning("slow disk: a commit's fsync took long", seconds=round(sync, 3))
        if checkpoints.done > self.stats.checkpoints:
            self.stats.checkpoints = checkpoints.done
            took = round(checkpoints.last_seconds, 3)
            (log.warning if took > 1.0 else log.debug)("WAL checkpointed", seconds=took)
        if checkpoints.failed > self._checkpoint_failures:
            self._checkpoint_failures = checkpoints.failed
            log.warning(
                "WAL checkpoint failed; the WAL grows until one works",
                error=checkpoints.last_error,
            )

    async def checkpoint(self) -> tuple[int, int]:
        """Checkpoint now (after any under way): ``(frames in the WAL, frames copied)``."""
        return await self._host.checkpoint()

    async def replay(self) -> int:
        """Delete every projection row and refold the whole log, in one transaction."""
        async with self._replaying:
            self._held = True  # no batch is sent meanwhile; those sent commit first
            try:
                self._note_quiet()
                await self._quiet.wait()
                count = await self._host.replay()
                self.stats.commits += 1
            finally:
                self._held = False
                self._flush()
        return count

    # -- reads ------------------------------------------------------------------------------

    async def read_log(
        self, since_seq: int = 0, room: str | None = None, limit: int = 1000
    ) -> list[Event]:
        query = f"{sql.SELECT_EVENTS} WHERE seq > ?"
        params: list[Any] = [since_seq]
        if room is not None:
            query += " AND room = ?"
            params.append(room)
        query += " ORDER BY seq LIMIT ?"
        params.append(limit)
        return [sql.event_of(r) for r in await self._reader.execute_fetchall(query, params)]

    async def get_row(self, projection: str, key: str) -> Row | None:
        query = f"{sql.SELECT_ROWS} WHERE projection = ? AND key = ?"
        found = await self._point_read(query, (projection, key))
        return sql.row_of(found[0]) if found else None

    async def _point_read(self, query: str, params: Sequence[Any]) -> list[Any]:
        """A point read, on the point thread. On the event loop it cost ~5 µs instead of a hop
        (declaring 3,000 rooms: 8 s instead of 28), but SQLite can wait inside a read, and on
        the loop that wait held every request: at 10,000 rooms, for 5 to 29 s at a time."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._point_executor, self._timed_read, query, params)

    def _timed_read(self, query: str, params: Sequence[Any]) -> list[Any]:
        started = time.perf_counter()
        found = self._point.execute(query, params).fetchall()
        if (took := time.perf_counter() - started) > SLOW_READ_SECONDS:
            log.warning("slow point read", seconds=round(took, 3), query=query[:60])
        return found

    async def rows(
        self, projection: str, room: str | None = None, after_key: str = "", limit: int = 1000
    ) -> list[Row]:
        if room is not None:  # one room's (or channel's) rows: a point read
            params = (projection, room, after_key, limit)
            return [sql.row_of(r) for r in await self._point_read(sql.ROOM_ROWS, params)]
        query = f"{sql.SELECT_ROWS} WHERE projection = ? AND key > ? ORDER BY key LIMIT ?"
        found = await self._reader.execute_fetchall(query, (projection, after_key, limit))
        return [sql.row_of(r) for r in found]

    async def ping(self) -> None:
        if self._closing:
            raise StoreError("the store is closed")
        await self._reader.execute_fetchall("SELECT 1")

    async def synchronous(self) -> int:
        """The writer's ``PRAGMA synchronous`` (2 = FULL): what "durable" rests on."""
        return await self._host.synchronous()

    async def durability(self) -> str:
        """What an acknowledgement rests on (``DurabilityReporting``): fsync at every commit."""
        level = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(await self.synchronous(), "?")
        return f"synchronous={level} journal_mode=wal"

    async def close(self) -> None:
        """Stop taking appends, let the writer commit everything already queued, then close."""
        if self._closed:
            return
        self._closing = True
        try:
            self._note_quiet()
            await self._quiet.wait()  # every append taken is answered first
        finally:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            for _, future in (*self._pending, *self._retries):  # cancelled: leave none hanging
                _fail(future, StoreClosed("the store closed before this append committed"))
            await self._reader.close()
            self._point_executor.shutdown()
            self._point.close()
            await self._host.close()  # the last connection: SQLite checkpoints


def _expire(future: asyncio.Future[Appended], store: SqliteStore) -> None:
    """An append's deadline: if it is not durable yet, its caller is told to retry."""
    if not future.done():
        seconds = store._append_timeout
        future.set_exception(AppendTimedOut(f"the append was not durable within {seconds:g} s"))
        if store._failing_since is None:  # until a commit succeeds again
            store._failing_since = store._loop.time()


def _fail(future: asyncio.Future[Appended], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, StoreError):
        future.set_exception(exc)
        return
    error = StoreError(f"append failed: {exc!r}")
    error.__cause__ = exc
    future.set_exception(error)
