"""The event log on PostgreSQL, shared by any number of replicas: group commit, a gap-free feed.

``append`` queues the event and waits; everything pending (up to ``batch_cap``) goes as ONE
transaction on a pooled connection, ONE synchronous commit (``synchronous_commit=on``: the WAL
is flushed before the commit returns), and only then are the callers answered. While one batch
commits the next one gathers; two batches leave at least ``batch_interval`` apart.

Every write transaction takes one transaction-level advisory lock first (``APPEND_LOCK``) and
holds it to its commit. That serialises numbering and commit across all replicas, so:

- seqs are ``max(seq) + 1``: no gaps (a rolled-back batch numbered nothing that stays);
- commits become visible in seq order, so the feed is gap-free for readers: a reader that saw
  seq 11 can never later find 10 (with a sequence and concurrent commits, it could);
- the dedup lookup, the fold's reads of the rows and the lease check all see every earlier
  commit of every replica: nothing is cached between batches, so two replicas writing the same
  rows never fold over a stale copy.

A batch whose appends carry a :class:`~reconcilers.events.Fence` checks each lease in the same
transaction (``CHECK_FENCE``, ``FOR SHARE``) before writing anything; a stale one is answered
with :class:`StaleFence` and nothing of it is written, the rest of the batch commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from reconcilers.events import Appended, Event, Fence, Fold, NewEvent, Projection, Row
from service.store.base import (
    BatchReport,
    RowKey,
    StaleFence,
    StoreClosed,
    StoreError,
    StoreStats,
    fold_batch,
    log,
    numbered,
    touched_keys,
)
from service.store.postgres import sql
from service.store.postgres.pool import PoolLimits, open_pool
from service.store.postgres.schema import migrate

__all__ = ["DEFAULT_BATCH_CAP", "DEFAULT_BATCH_INTERVAL", "PoolLimits", "PostgresStore"]

DEFAULT_BATCH_CAP = 512
"""Most appends in one transaction: bounds a batch's latency and memory, not its benefit."""

DEFAULT_BATCH_INTERVAL = 0.001
"""Seconds between two batches at least, as SQLite's (fewer, fuller commits under load)."""

PIPELINE_DEPTH = 2
"""Batches in flight at once: the next one waits for the lock at the server while one commits,
instead of waiting here for the answer before it is sent."""

_REPLAY_PAGE = 5000
_Pending = tuple[NewEvent, "asyncio.Future[Appended]"]


class PostgresStore:
    """The :class:`reconcilers.events.Store` on PostgreSQL. Open it with :meth:`open`."""

    fences_appends = True

    def __init__(
        self,
        pool: asyncpg.Pool,
        projections: Sequence[Projection],
        batch_cap: int,
        batch_interval: float,
    ) -> None:
        self._pool = pool
        self._projections = tuple(projections)
        self._batch_cap = batch_cap
        self._interval = batch_interval
        self._loop = asyncio.get_running_loop()
        self._pending: deque[_Pending] = deque()
        self._retries: deque[_Pending] = deque()  # a failed batch's appends, sent one by one
        self._in_flight: set[asyncio.Task[None]] = set()
        self._flush_soon = False
        self._last_sent = -batch_interval
        self._timer: asyncio.TimerHandle | None = None
        self._held = False  # a replay holds back new batches
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._replaying = asyncio.Lock()
        self._closing = False
        self._closed = False
        self.stats = StoreStats()

    @classmethod
    async def open(
        cls,
        dsn: str,
        projections: Sequence[Projection] = (),
        *,
        limits: PoolLimits | None = None,
        batch_cap: int = DEFAULT_BATCH_CAP,
        batch_interval: float = DEFAULT_BATCH_INTERVAL,
    ) -> PostgresStore:
        """Connect a pool, apply the missing migrations (under their advisory lock), start."""
        limits = limits or PoolLimits()
        try:
            pool = await open_pool(
                dsn,
                limits,
                # Durable before the answer, whatever the server's default says.
                server_settings={"synchronous_commit": "on", "application_name": "recctl"},
                # Our connections keep no session state (no LISTEN, no session locks, no SET):
                # a returned connection needs only its transaction ended, which asyncpg does,
                # not the reset query (a round trip at every release).
                reset=_no_session_state,
            )
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            async with pool.acquire() as conn:
                applied = await migrate(conn)
            if applied:
                log.info("schema migrated", backend="postgresql", versions=applied)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, projections, batch_cap, batch_interval)

    @property
    def pool(self) -> asyncpg.Pool:
        """The store's connection pool. Borrow a connection only for statements and
        transactions: it is handed on without a reset, so no LISTEN, SET or session lock."""
        return self._pool

    # -- writes -----------------------------------------------------------------------------

    async def append(self, event: NewEvent) -> Appended:
        """Queue for the next group commit; return once it is durable, raise if it failed
        (``StaleFence`` if its fence is stale: then nothing of it was written)."""
        if self._closing:
            raise StoreClosed("the store is closed")
        if event.received_at is None:
            event = replace(event, received_at=datetime.now(UTC))
        future: asyncio.Future[Appended] = self._loop.create_future()
        self._pending.append((event, future))
        self._quiet.clear()
        if not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """Send batches while the pipeline has room and the interval allows: a failed batch's
        appends first, one by one (a poison event then fails alone), then what is pending."""
        self._flush_soon = False
        while (self._retries or self._pending) and not self._held:
            if len(self._in_flight) >= PIPELINE_DEPTH:
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
            task = self._loop.create_task(self._commit(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        self._note_quiet()

    def _flush_on_time(self) -> None:
        self._timer = None
        self._flush()

    async def _commit(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            results, new, sync = await self._write([e for e, _ in batch])
        except Exception as exc:
            self.stats.failed_batches += 1
            if len(batch) == 1:
                log.error("append failed", error=repr(exc), dedup_key=batch[0][0].dedup_key)
                _fail(batch[0][1], exc)
            else:
                log.warning("batch failed; retrying its appends one by one", size=len(batch))
                self._retries.extend(batch)
        else:
            took = time.perf_counter() - started
            answered = [r for r in results if isinstance(r, Appended)]
            self.stats.committed(BatchReport(len(answered), new, took, sync))
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Appended):
                    future.set_result(result)
                else:
                    future.set_exception(result)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.discard(task)
            self._flush()

    async def _write(
        self, batch: Sequence[NewEvent]
    ) -> tuple[list[Appended | StaleFence], list[Event], float]:
        """One transaction under APPEND_LOCK: refuse stale fences, answer duplicates with the
        earlier copy, number and insert the rest, fold them, notify, commit (timed)."""
        async with self._pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                results, new, _ = await self._numbered_and_folded(conn, batch)
            except BaseException:
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
            # A commit that fails leaves the outcome unknown: the batch is retried one by one,
            # and dedup answers an append that had committed after all with its stored copy.
            syncing = time.perf_counter()
            await transaction.commit()
            sync = time.perf_counter() - syncing
        return results, new, sync

    async def _numbered_and_folded(
        self, conn: sql.Conn, batch: Sequence[NewEvent]
    ) -> tuple[list[Appended | StaleFence], list[Event], int]:
        await conn.execute(sql.TAKE_LOCK, sql.APPEND_LOCK)
        stale = await _stale_fences(conn, [e.fence for e in batch if e.fence])
        keys = list(dict.fromkeys((e.source, e.dedup_key) for e in batch if e.fence not in stale))
        found = await conn.fetch(sql.LAST_SEQ_AND_DUPLICATES, *sql.key_columns(keys))
        seq: int = found[0][0]
        duplicates = [sql.event_of(r, 1) for r in found if r[1] is not None]
        seen = {(e.source, e.dedup_key): e for e in duplicates}
        results: list[Appended | StaleFence] = []
        new: list[Event] = []
        raws: list[str | None] = []
        for pending in batch:
            if pending.fence is not None and pending.fence in stale:
                results.append(_refusal(pending.fence))
                continue
            key = (pending.source, pending.dedup_key)
            if key in seen:
                results.append(Appended(seen[key], duplicate=True))
                continue
            seq += 1
            event = numbered(pending, seq)
            seen[key] = event
            new.append(event)
            raws.append(pending.raw)
            results.append(Appended(event, duplicate=False))
        if new:
            upserts, deletes = await self._fold(conn, new)
            await conn.execute(
                sql.WRITE_BATCH,
                *sql.event_columns(new, raws),
                *sql.row_columns(upserts),
                *sql.key_columns(deletes),
                str(seq),
            )
        return results, new, seq

    async def _fold(
        self, conn: sql.Conn, events: Sequence[Event]
    ) -> tuple[list[tuple[RowKey, Row]], list[RowKey]]:
        """Load the rows the events touch (as the last commit left them), fold them: the rows
        to upsert and the keys to delete."""
        touched = touched_keys(self._projections, events)
        if not touched:
            return [], []
        found = await conn.fetch(sql.FIND_ROWS, *sql.key_columns(touched))
        loaded: dict[RowKey, Row] = {(r[0], r[1]): sql.row_of(r) for r in found}
        changed = fold_batch(self._projections, loaded, events, touched)
        upserts = [(k, row) for k, row in changed.items() if row is not None]
        deletes = [k for k, row in changed.items() if row is None]
        return upserts, deletes

    def _note_quiet(self) -> None:
        if not self._in_flight and (self._held or not (self._pending or self._retries)):
            self._quiet.set()
        else:
            self._quiet.clear()

    async def replay(self) -> int:
        """Delete every projection row and refold the whole log, in one transaction under
        APPEND_LOCK: every replica's appends wait for it, and then fold over its rows."""
        async with self._replaying:
            self._held = True
            try:
                self._note_quiet()
                await self._quiet.wait()
                count = await self._replay()
                self.stats.commits += 1
            finally:
                self._held = False
                self._flush()
        return count

    async def _replay(self) -> int:
        fold = Fold(self._projections)
        count = last = 0
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(sql.TAKE_LOCK, sql.APPEND_LOCK)
                await conn.execute("DELETE FROM projections")
                while page := await conn.fetch(
                    f"{sql.SELECT_EVENTS} WHERE seq > $1 ORDER BY seq LIMIT $2", last, _REPLAY_PAGE
                ):
                    for event in map(sql.event_of, page):
                        fold.apply(event)
                    count += len(page)
                    last = page[-1][0]
                rows = list(fold.rows.items())
                for start in range(0, len(rows), _REPLAY_PAGE):
                    chunk = rows[start : start + _REPLAY_PAGE]
                    await conn.execute(sql.UPSERT_ROWS, *sql.row_columns(chunk))
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"replay failed: {exc!r}") from exc
        return count

    # -- reads ------------------------------------------------------------------------------

    async def read_log(
        self, since_seq: int = 0, room: str | None = None, limit: int = 1000
    ) -> list[Event]:
        """Events after ``since_seq`` in seq order. Gap-free: commits are visible in seq order
        (APPEND_LOCK), so a tailing reader that resumes after its last seq never skips one."""
        if room is None:
            found = await self._fetch(sql.READ_LOG, since_seq, limit)
        else:
            found = await self._fetch(sql.READ_ROOM_LOG, since_seq, room, limit)
        return [sql.event_of(r) for r in found]

    async def get_row(self, projection: str, key: str) -> Row | None:
        found = await self._fetch(sql.GET_ROW, projection, key)
        return sql.row_of(found[0]) if found else None

    async def rows(
        self, projection: str, room: str | None = None, after_key: str = "", limit: int = 1000
    ) -> list[Row]:
        if room is None:
            found = await self._fetch(sql.ROWS, projection, after_key, limit)
        else:
            found = await self._fetch(sql.ROOM_ROWS, projection, room, after_key, limit)
        return [sql.row_of(r) for r in found]

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        if self._closed:
            raise StoreClosed("the store is closed")
        try:
            return await self._pool.fetch(query, *args)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"read failed: {exc!r}") from exc

    async def ping(self) -> None:
        if self._closing:
            raise StoreError("the store is closed")
        await self._fetch("SELECT 1")

    async def durability(self) -> str:
        """What an acknowledgement rests on: the session's ``synchronous_commit`` (and fsync)."""
        async with self._pool.acquire() as conn:
            commit = await conn.fetchval("SHOW synchronous_commit")
            fsync = await conn.fetchval("SHOW fsync")
        return f"synchronous_commit={commit} fsync={fsync}"

    async def close(self) -> None:
        """Stop taking appends, let everything already queued commit, then close the pool."""
        if self._closed:
            return
        self._closing = True
        try:
            self._note_quiet()
            await self._quiet.wait()
        finally:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            for _, future in (*self._pending, *self._retries):
                _fail(future, StoreClosed("the store closed before this append committed"))
            try:
                await asyncio.wait_for(self._pool.close(), timeout=10)
            except TimeoutError:
                self._pool.terminate()


async def _no_session_state(conn: object) -> None:
    """The pool's reset: nothing to undo (see ``open``)."""


async def _stale_fences(conn: sql.Conn, fences: Sequence[Fence]) -> set[Fence]:
    """The fences among ``fences`` whose lease is gone; the others' lease rows are locked
    FOR SHARE to the commit, so no takeover can commit beside this transaction."""
    stale: set[Fence] = set()
    # In shard order, as the replicas' lease statements lock their rows: two transactions
    # taking row locks in one order cannot deadlock (seen at start-up with three replicas).
    for fence in sorted(set(fences), key=lambda f: (f.shard, f.token, f.owner)):
        if await conn.fetchval(sql.CHECK_FENCE, fence.shard, fence.token, fence.owner) is None:
            stale.add(fence)
    return stale


def _refusal(fence: Fence) -> StaleFence:
    return StaleFence(
        f"stale fence: {fence.owner} no longer holds shard {fence.shard} with token {fence.token}"
    )


def _fail(future: asyncio.Future[Appended], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, StoreError):
        future.set_exception(exc)
        return
    error = StoreError(f"append failed: {exc!r}")
    error.__cause__ = exc
    future.set_exception(error)
