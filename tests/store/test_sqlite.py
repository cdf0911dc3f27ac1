"""SQLite's own guarantees: group commit and its interval, WAL and fsync, checkpoints aside,
point reads off the event loop, the writer's known rows. The store contract every backend
keeps is ``test_contract.py``."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconcilers.events import Fence, Fold, NewEvent, Projection, Row
from service.store import (
    BatchReport,
    ObservableStore,
    SqliteStore,
    open_store,
)
from service.store.base import FencedAppends
from service.store.sqlite import schema, sqlite_path
from service.store.sqlite.writer import KnownState, SqliteWriter
from tests.helpers import Boom
from tests.support.store_cases import PROJECTIONS, as_stored, new


async def _open_sqlite(directory: Path, projections: Sequence[Projection]) -> ObservableStore:
    return await open_store(f"sqlite:///{directory / 'events.db'}", projections)


async def test_group_commit_batches_concurrent_appends(tmp_path: Path) -> None:
    store = await _open_sqlite(tmp_path, PROJECTIONS)
    reports: list[BatchReport] = []
    store.stats.observers.append(reports.append)
    try:
        results = await asyncio.gather(*(store.append(new(f"k{i}")) for i in range(200)))
        assert sorted(r.event.seq for r in results) == list(range(1, 201))
        assert store.stats.appended == 200
        assert store.stats.commits <= 10, store.stats
        assert sum(r.size for r in reports) == 200
        assert max(r.size for r in reports) > 20
    finally:
        await store.close()


@pytest.mark.parametrize("writer_process", [False, True])
async def test_a_batch_waits_out_the_interval_since_the_one_before(
    writer_process: bool, tmp_path: Path
) -> None:
    """Under a stream of appends the commits are an interval apart, and fuller for it; an
    append after a quiet spell leaves at once. (A long interval, so that the test does not
    depend on how fast this machine commits.)"""
    interval = 0.2
    store = await SqliteStore.open(
        tmp_path / "events.db", batch_interval=interval, writer_process=writer_process
    )
    reports: list[BatchReport] = []
    store.stats.observers.append(reports.append)
    try:
        first = asyncio.create_task(store.append(new("k0")))
        await asyncio.sleep(0)  # a turn: the append is queued
        await asyncio.sleep(0)  # the next: nothing was sent before it, so it leaves now
        assert store._in_flight == 1 and store._timer is None
        sent = store._last_sent
        await first
        stream = [asyncio.create_task(store.append(new(f"k{i}"))) for i in range(1, 4)]
        await asyncio.sleep(0)
        stream.append(asyncio.create_task(store.append(new("k4"))))  # a turn later: same batch
        await asyncio.sleep(0)
        assert store._in_flight == 0 and store._timer is not None  # held back
        await asyncio.gather(*stream)
        assert store._last_sent - sent >= interval
        assert [r.size for r in reports] == [1, 4]
    finally:
        await store.close()


async def test_without_an_interval_a_batch_leaves_as_soon_as_the_pipeline_has_room(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path / "events.db", batch_interval=0, writer_process=True)
    reports: list[BatchReport] = []
    store.stats.observers.append(reports.append)
    try:
        await store.append(new("k0"))
        second = asyncio.create_task(store.append(new("k1")))
        await asyncio.sleep(0)
        third = asyncio.create_task(store.append(new("k2")))  # a turn later: its own batch
        await asyncio.gather(second, third)
        assert [r.size for r in reports] == [1, 1, 1]
    finally:
        await store.close()


async def test_sqlite_is_durable_before_it_acknowledges(tmp_path: Path) -> None:
    store = await _open_sqlite(tmp_path, ())
    try:
        await store.append(new("k1"))
        assert isinstance(store, SqliteStore)
        assert await store.synchronous() == 2  # FULL: fsync at every commit
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "events.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("UPDATE events SET type = 'x'")


async def test_sqlite_has_no_leases_and_ignores_fences(tmp_path: Path) -> None:
    """One process on one file: nothing to fence against (PostgreSQL checks them)."""
    store = await _open_sqlite(tmp_path, PROJECTIONS)
    try:
        assert not isinstance(store, FencedAppends)
        appended = await store.append(new("k1", fence=Fence(1, 1, "nobody")))
        assert not appended.duplicate and await store.read_log() == [appended.event]
    finally:
        await store.close()


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:///./recorder.db") == "./recorder.db"
    assert sqlite_path("sqlite:////var/lib/r.db") == "/var/lib/r.db"
    for bad in ("sqlite:///:memory:", "sqlite://", "postgres://x/y", "sqlite:///"):
        with pytest.raises(ValueError):
            sqlite_path(bad)


async def test_open_store_refuses_what_it_cannot_serve() -> None:
    for url in ("postgresql://", "mysql://h/db", "sqlite:///:memory:", "postgresql://h:port/db"):
        with pytest.raises(ValueError):
            await open_store(url, ())


@pytest.mark.parametrize("writer_process", [False, True], ids=["thread", "process"])
async def test_the_wal_is_checkpointed_aside_and_stays_bounded(
    tmp_path: Path, writer_process: bool
) -> None:
    """Commits never checkpoint (``wal_autocheckpoint=0``); the writer does it in the
    background (in its own process, when it has one) once the WAL passes its bound, and the
    WAL is then reused instead of growing."""

    async def wal_frames_after_load(directory: Path, bound: int) -> tuple[int, int, int]:
        store = await SqliteStore.open(
            directory / "events.db", (), checkpoint_bytes=bound, writer_process=writer_process
        )
        try:
            for round_ in range(20):
                batch = (new(f"k{round_}-{i}", payload={"blob": "x" * 2000}) for i in range(20))
                await asyncio.gather(*map(store.append, batch))
            assert await store.synchronous() == 2
            size = (directory / "events.db-wal").stat().st_size
            frames, _ = await store.checkpoint()
            checkpoints = store.stats.checkpoints
        finally:
            await store.close()
        return frames, checkpoints, size

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    unbounded, none, unbounded_size = await wal_frames_after_load(tmp_path / "a", 1 << 40)
    bounded, some, size = await wal_frames_after_load(tmp_path / "b", 64 * 1024)
    assert none == 0 and 3 <= some < 20  # not after every commit
    assert bounded < unbounded / 3
    assert size < unbounded_size / 3  # cut back when started over (``journal_size_limit``)
    with sqlite3.connect(tmp_path / "b" / "events.db") as raw:
        assert raw.execute("SELECT COUNT(*) FROM events").fetchone() == (400,)


async def test_point_reads_never_run_on_the_event_loop(tmp_path: Path) -> None:
    """SQLite can wait inside a read (seen: 5 to 29 s); on the loop, every request waits."""
    store = await SqliteStore.open(tmp_path / "events.db", PROJECTIONS)
    threads: list[int] = []
    real = store._point

    class Watched:
        def execute(self, query: str, params: Sequence[Any]) -> sqlite3.Cursor:
            threads.append(threading.get_ident())
            return real.execute(query, params)

        def close(self) -> None:
            real.close()

    try:
        await store.append(new("k1", room="r1"))
        store._point = Watched()  # type: ignore[assignment]
        row = await store.get_row("tally", "r1")
        rows = await store.rows("tally", room="g")
        assert row is not None and row.data["count"] == 1 and rows == []
        assert len(threads) == 2 and threading.get_ident() not in threads
    finally:
        await store.close()


async def test_one_rooms_rows_are_read_through_the_room_index(tmp_path: Path) -> None:
    """Left to itself SQLite read a room's rows by walking the whole projection's primary key:
    at 10,000 rooms, most of the service's CPU. The statement the store runs must use the index."""
    path = tmp_path / "events.db"
    store = await open_store(f"sqlite:///{path}", [])
    assert isinstance(store, SqliteStore)
    statements: list[str] = []
    store._point.set_trace_callback(statements.append)
    try:
        assert await store.rows("sessions", room="agora/room-1") == []
    finally:
        await store.close()
    [statement] = statements
    with contextlib.closing(sqlite3.connect(path)) as conn:
        plan = conn.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall()
    assert [step[3] for step in plan] == [
        "SEARCH projections USING INDEX projections_room (projection=? AND room=? AND key>?)"
    ]


def _stamped(events: Sequence[NewEvent]) -> list[NewEvent]:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    return [replace(e, received_at=at) for e in events]


def _rows_on_disk(path: Path) -> dict[tuple[str, str], Row]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        found = conn.execute(f"{schema.SELECT_ROWS}").fetchall()
    return {(r.projection, r.key): r for r in map(schema.row_of, found)}


def _reference(path: Path) -> dict[tuple[str, str], Row]:
    """The rows a fold of the whole log gives, as they would be stored."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        log = [schema.event_of(r) for r in conn.execute(f"{schema.SELECT_EVENTS} ORDER BY seq")]
    fold = Fold(PROJECTIONS)
    for event in log:
        fold.apply(event)
    return as_stored({k: replace(r, projection=k[0], key=k[1]) for k, r in fold.rows.items()})


def test_a_write_reuses_the_rows_the_last_one_left(tmp_path: Path) -> None:
    """The writer keeps what its commits left (rows, last seq): a write touching the same rows
    as the one before reads neither from the file."""
    writer = SqliteWriter(tmp_path / "events.db", PROJECTIONS)
    writer.open()
    statements: list[str] = []
    try:
        writer.write(_stamped([new("k1", session="s1")]))
        writer.conn.set_trace_callback(statements.append)
        writer.write(_stamped([new("k2", session="s1")]))
    finally:
        writer.close()
    assert not [s for s in statements if "FROM projections" in s or "MAX(seq)" in s]
    assert _rows_on_disk(tmp_path / "events.db") == _reference(tmp_path / "events.db")


def test_a_writer_sees_what_another_connection_committed(tmp_path: Path) -> None:
    """Two writers on one file (``recctl`` beside ``recctl serve``): each forgets what it knew
    once the other has committed, so no row update and no seq is lost."""
    path = tmp_path / "events.db"
    first, second = SqliteWriter(path, PROJECTIONS), SqliteWriter(path, PROJECTIONS)
    first.open()
    second.open()
    try:
        for i in range(12):
            writer = first if i % 3 else second
            writer.write(_stamped([new(f"k{i}", type_=f"t{i % 2}", session=f"s{i % 2}")]))
    finally:
        first.close()
        second.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT seq FROM events ORDER BY seq").fetchall() == [
            (i,) for i in range(1, 13)
        ]
    rows = _rows_on_disk(path)
    assert rows == _reference(path) and rows[("tally", "r1")].data["count"] == 12


def test_what_the_writer_keeps_is_bounded_and_a_failed_write_forgets_it(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    writer = SqliteWriter(path, [Boom(), *PROJECTIONS])
    writer.open()
    known = writer._known
    known.budget = 12_000  # some 16 of these rows
    try:
        for i in range(30):
            writer.write(_stamped([new(f"k{i}", session=f"s{i}", room=f"r{i % 7}")]))
            kept = known._rows.values()
            assert known.size == sum(known.cost(size) for _, size in kept)
            assert known.size <= known.budget
        assert len(known._rows) >= 8
        with pytest.raises(RuntimeError):
            writer.write(_stamped([new("bad", type_="poison", session="s1")]))
        assert known.last_seq is None and not known._rows and known.size == 0
        writer.write(_stamped([new("k30", session="s1", room="r2")]))
    finally:
        writer.close()
    assert _rows_on_disk(path) == _reference(path)


def test_a_row_too_big_for_its_share_of_the_budget_is_not_kept() -> None:
    """A recording's row grows with its files; one giant must not push out everything else."""
    known = KnownState(budget=160_000)
    small, big = Row("p", "small", None, {}), Row("p", "big", None, {})
    known.committed(1, {("p", "small"): (small, 500), ("p", "big"): (big, 10_000)})
    assert list(known._rows) == [("p", "small")] and known.size == known.cost(500)
    known.committed(2, {("p", "small"): (None, 0)})  # deleted: known to be absent
    assert known._rows == {("p", "small"): (None, 0)} and known.size == known.ENTRY_BYTES
