"""The Store contract, run against every backend in BACKENDS, plus SQLite's own guarantees.

To add a backend (PostgreSQL), add an opener to BACKENDS: every contract test and the replay
property run against it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcilers.events import Event, Fold, NewEvent, Projection, Row, Store
from service.store import (
    BatchReport,
    ObservableStore,
    SqliteStore,
    StoreClosed,
    StoreError,
    open_store,
)
from service.store import sqlite_schema as schema
from service.store.sqlite import sqlite_path
from service.store.sqlite_writer import KnownState, SqliteWriter
from tests.helpers import Boom

Opener = Callable[[Path, Sequence[Projection]], Awaitable[ObservableStore]]


async def _open_sqlite(directory: Path, projections: Sequence[Projection]) -> ObservableStore:
    return await open_store(f"sqlite:///{directory / 'events.db'}", projections)


async def _open_sqlite_process(
    directory: Path, projections: Sequence[Projection]
) -> ObservableStore:
    url = f"sqlite:///{directory / 'events.db'}"
    return await open_store(url, projections, writer_process=True)


BACKENDS: dict[str, Opener] = {"sqlite": _open_sqlite, "sqlite-process": _open_sqlite_process}


class RoomTally:
    """Order-sensitive on purpose: counts a room's events, keeps its last three types."""

    name = "tally"

    def keys(self, event: Event) -> Sequence[str]:
        return [event.room] if event.room else []

    def apply(self, row: Row | None, event: Event) -> Row | None:
        if event.type == "reset":
            return None
        data = dict(row.data) if row else {"count": 0, "recent": []}
        data["count"] += 1
        data["recent"] = [*data["recent"], event.type][-3:]
        return Row(self.name, event.room or "", event.payload.get("group"), data, event.seq)


class SessionTypes:
    """Several keys per event (per session and type, and per session). ``apply`` is not told
    the key, so a new row's key is left empty: the store files rows under ``keys()``'s key."""

    name = "session_types"

    def keys(self, event: Event) -> Sequence[str]:
        return [f"{event.session}:{event.type}", f"{event.session}:*"] if event.session else []

    def apply(self, row: Row | None, event: Event) -> Row | None:
        data = (
            {"n": row.data["n"] + 1, "first": row.data["first"]}
            if row
            else {"n": 1, "first": event.seq}
        )
        return Row(self.name, row.key if row else "", event.room, data, event.seq)


PROJECTIONS: tuple[Projection, ...] = (RoomTally(), SessionTypes())


def new(key: str, type_: str = "a", room: str | None = "r1", **kw: Any) -> NewEvent:
    payload = kw.pop("payload", {"group": "g1", "key": key})
    return NewEvent("api", key, type_, payload, room=room, **kw)


async def all_rows(store: Store, projections: Sequence[Projection]) -> dict[tuple[str, str], Row]:
    found: dict[tuple[str, str], Row] = {}
    for projection in projections:
        after = ""
        while page := await store.rows(projection.name, after_key=after, limit=7):
            found.update({(r.projection, r.key): r for r in page})
            after = page[-1].key
    return found


def as_stored(rows: dict[tuple[str, str], Row]) -> dict[tuple[str, str], Row]:
    """What a row looks like after a trip through the store: canonical key, JSON data."""
    return {
        k: Row(k[0], k[1], r.room, json.loads(json.dumps(r.data)), r.seq) for k, r in rows.items()
    }


@pytest.fixture(params=sorted(BACKENDS))
def opener(request: pytest.FixtureRequest) -> Opener:
    return BACKENDS[request.param]


@pytest.fixture
async def store(opener: Opener, tmp_path: Path) -> AsyncIterator[ObservableStore]:
    opened = await opener(tmp_path, PROJECTIONS)
    yield opened
    await opened.close()


class TestStoreContract:
    async def test_append_gives_consecutive_seqs_and_the_stored_event(self, store: Store) -> None:
        at = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
        first = await store.append(new("k1", occurred_at=at, session="s1"))
        second = await store.append(new("k2"))
        assert (first.duplicate, second.duplicate) == (False, False)
        assert second.event.seq == first.event.seq + 1
        assert await store.read_log() == [first.event, second.event]
        assert first.event.occurred_at == at and first.event.session == "s1"
        assert first.event.received_at.tzinfo is not None

    async def test_a_duplicate_returns_the_first_copy_and_stores_nothing(
        self, store: Store
    ) -> None:
        first = await store.append(new("k1", payload={"v": 1}))
        again = await store.append(new("k1", type_="other", payload={"v": 2}))
        assert again == type(again)(first.event, duplicate=True)
        assert len(await store.read_log()) == 1
        tally = await store.get_row("tally", "r1")
        assert tally is not None and tally.data["count"] == 1

    async def test_a_duplicate_inside_one_batch_is_stored_once(self, store: Store) -> None:
        results = await asyncio.gather(*(store.append(new("same")) for _ in range(5)))
        assert [r.duplicate for r in results].count(False) == 1
        assert {r.event.seq for r in results} == {results[0].event.seq}
        assert len(await store.read_log()) == 1

    async def test_dedup_keys_are_per_source(self, store: Store) -> None:
        a = await store.append(NewEvent("api", "k", "a", {}))
        b = await store.append(NewEvent("agora", "k", "a", {}))
        assert not a.duplicate and not b.duplicate and a.event.seq != b.event.seq

    async def test_projections_follow_each_append(self, store: Store) -> None:
        await store.append(new("k1", session="s1"))
        await store.append(new("k2", type_="b", session="s1"))
        tally = await store.get_row("tally", "r1")
        assert tally == Row("tally", "r1", "g1", {"count": 2, "recent": ["a", "b"]}, 2)
        per_session = await store.get_row("session_types", "s1:*")
        assert per_session is not None and per_session.data == {"n": 2, "first": 1}

    async def test_a_projection_returning_none_deletes_the_row(self, store: Store) -> None:
        await store.append(new("k1"))
        await store.append(new("k2", type_="reset"))
        assert await store.get_row("tally", "r1") is None
        await store.append(new("k3"))
        row = await store.get_row("tally", "r1")
        assert row is not None and row.data["count"] == 1

    async def test_read_log_filters_by_seq_and_room_and_pages(self, store: Store) -> None:
        for i in range(6):
            await store.append(new(f"k{i}", room="r1" if i % 2 else "r2"))
        assert [e.seq for e in await store.read_log(since_seq=4)] == [5, 6]
        assert [e.seq for e in await store.read_log(room="r1")] == [2, 4, 6]
        assert [e.seq for e in await store.read_log(room="r2", since_seq=1, limit=1)] == [3]

    async def test_rows_filter_by_room_and_page_by_key(self, store: Store) -> None:
        for i, room in enumerate(["c", "a", "b", "d"]):
            group = "g1" if room in "ab" else "g2"
            await store.append(new(f"k{i}", room=room, payload={"group": group}))
        assert [r.key for r in await store.rows("tally")] == ["a", "b", "c", "d"]
        assert [r.key for r in await store.rows("tally", room="g2")] == ["c", "d"]
        assert [r.key for r in await store.rows("tally", after_key="b", limit=1)] == ["c"]
        assert await store.rows("nothing") == []

    async def test_a_row_is_found_by_its_room_after_it_keeps_or_changes_it(
        self, store: Store
    ) -> None:
        """A row that keeps its room is updated in place (the room index untouched); one that
        moves is found under its new room only."""
        await store.append(new("k1", payload={"group": "g1"}))
        await store.append(new("k2", payload={"group": "g1"}))  # same room: data and seq only
        [kept] = await store.rows("tally", room="g1")
        assert kept.data["count"] == 2 and kept.seq == 2
        await store.append(new("k3", payload={"group": "g2"}))  # moves
        assert await store.rows("tally", room="g1") == []
        [moved] = await store.rows("tally", room="g2")
        assert moved.data["count"] == 3 and moved.seq == 3 and moved.room == "g2"
        await store.append(new("k4", payload={"group": "g2"}))
        [again] = await store.rows("tally", room="g2")
        assert again.data["count"] == 4 and again.seq == 4

    async def test_replay_rebuilds_the_same_rows(self, store: Store) -> None:
        for i in range(20):
            await store.append(new(f"k{i}", type_="reset" if i == 7 else "a", session=f"s{i % 3}"))
        before = await all_rows(store, PROJECTIONS)
        assert await store.replay() == 20
        assert await all_rows(store, PROJECTIONS) == before

    async def test_replay_fills_a_projection_added_later(
        self, opener: Opener, tmp_path: Path
    ) -> None:
        first = await opener(tmp_path, [RoomTally()])
        await first.append(new("k1", session="s1"))
        await first.close()
        second = await opener(tmp_path, PROJECTIONS)
        try:
            assert await second.get_row("session_types", "s1:*") is None
            assert await second.replay() == 1
            assert await second.get_row("session_types", "s1:*") is not None
        finally:
            await second.close()

    async def test_events_survive_reopening(self, opener: Opener, tmp_path: Path) -> None:
        first = await opener(tmp_path, PROJECTIONS)
        appended = await first.append(new("k1", occurred_at=datetime(2024, 1, 1)))
        await first.close()
        second = await opener(tmp_path, PROJECTIONS)
        try:
            assert await second.read_log() == [appended.event]
            assert (await second.append(new("k1"))).duplicate
            assert (await second.append(new("k2"))).event.seq == 2
        finally:
            await second.close()

    async def test_close_commits_everything_already_queued(
        self, opener: Opener, tmp_path: Path
    ) -> None:
        opened = await opener(tmp_path, PROJECTIONS)
        pending = [asyncio.ensure_future(opened.append(new(f"k{i}"))) for i in range(50)]
        await asyncio.sleep(0)  # let every append reach the queue before close() does
        await opened.close()
        assert all(not p.result().duplicate for p in pending)
        with pytest.raises(StoreClosed):
            await opened.append(new("late"))
        with pytest.raises(StoreError):
            await opened.ping()
        reopened = await opener(tmp_path, PROJECTIONS)
        try:
            assert len(await reopened.read_log()) == 50
        finally:
            await reopened.close()

    async def test_ping(self, store: Store) -> None:
        await store.ping()

    async def test_a_failed_batch_fails_every_caller_and_stores_nothing(
        self, opener: Opener, tmp_path: Path
    ) -> None:
        broken = await opener(tmp_path, [Boom(always=True)])
        try:
            results = await asyncio.gather(
                *(broken.append(new(f"k{i}")) for i in range(20)), return_exceptions=True
            )
            assert all(isinstance(r, StoreError) for r in results)
            assert await broken.read_log() == []
        finally:
            await broken.close()

    async def test_a_poison_event_fails_alone(self, opener: Opener, tmp_path: Path) -> None:
        guarded = await opener(tmp_path, [Boom(), RoomTally()])
        try:
            appends = [new(f"k{i}", type_="poison" if i == 13 else "a") for i in range(40)]
            results = await asyncio.gather(
                *(guarded.append(e) for e in appends), return_exceptions=True
            )
            failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
            assert failed == [13]
            assert isinstance(results[13], StoreError)
            assert len(await guarded.read_log()) == 39
            tally = await guarded.get_row("tally", "r1")
            assert tally is not None and tally.data["count"] == 39
        finally:
            await guarded.close()


# -- SQLite only -----------------------------------------------------------------------------


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


@pytest.mark.parametrize("backend", sorted(BACKENDS))
async def test_each_batch_reports_its_fsync_apart_from_the_round_trip(
    backend: str, tmp_path: Path
) -> None:
    """The writer times its COMMIT beside the disk, so a slow disk can be told apart from a
    slow hop to the writer: the part is never more than the whole, and never nothing."""
    store = await BACKENDS[backend](tmp_path, PROJECTIONS)
    reports: list[BatchReport] = []
    store.stats.observers.append(reports.append)
    try:
        for i in range(5):
            await store.append(new(f"k{i}"))
        assert len(reports) == 5
        assert all(0 < r.sync_seconds <= r.seconds for r in reports), reports
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


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:///./recorder.db") == "./recorder.db"
    assert sqlite_path("sqlite:////var/lib/r.db") == "/var/lib/r.db"
    for bad in ("sqlite:///:memory:", "sqlite://", "postgres://x/y", "sqlite:///"):
        with pytest.raises(ValueError):
            sqlite_path(bad)


async def test_open_store_refuses_what_it_cannot_serve() -> None:
    for url in ("postgresql://u@h/db", "mysql://h/db", "sqlite:///:memory:"):
        with pytest.raises(ValueError):
            await open_store(url, ())


# -- the replay property ---------------------------------------------------------------------

_base = datetime(2024, 1, 1, tzinfo=UTC)
_generic_event = st.builds(
    NewEvent,
    source=st.sampled_from(["api", "agora"]),
    dedup_key=st.sampled_from([f"k{i}" for i in range(8)]),
    type=st.sampled_from(["a", "b", "reset"]),
    payload=st.fixed_dictionaries(
        {"group": st.sampled_from([None, "g1", "g2"]), "n": st.integers()}
    ),
    room=st.sampled_from([None, "r1", "r2"]),
    session=st.sampled_from([None, "s1", "s2"]),
    occurred_at=st.one_of(st.none(), st.integers(0, 10**6).map(lambda s: _base + timedelta(s))),
)


def check_replay(
    opener: Opener, projections: Sequence[Projection], batches: list[list[NewEvent]]
) -> None:
    """Live rows == rows after replay() == an in-memory Fold of the stored log."""

    async def scenario(directory: Path) -> None:
        store = await opener(directory, projections)
        try:
            for batch in batches:  # each batch concurrently: in-batch duplicates and reordering
                await asyncio.gather(*(store.append(e) for e in batch))
            log = await store.read_log(limit=10_000)
            assert len({(e.source, e.dedup_key) for e in log}) == len(log)
            assert [e.seq for e in log] == list(range(1, len(log) + 1))
            fold = Fold(projections)
            for event in log:
                fold.apply(event)
            live = await all_rows(store, projections)
            assert live == as_stored(fold.rows)
            assert await store.replay() == len(log)
            assert await all_rows(store, projections) == live
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(scenario(Path(directory)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(_generic_event, min_size=1, max_size=6), max_size=8))
def test_replay_equals_live_projections(batches: list[list[NewEvent]]) -> None:
    check_replay(_open_sqlite, PROJECTIONS, batches)


# Each example starts a writer process (~0.3 s): fewer of them; the fold is the same code.
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(_generic_event, min_size=1, max_size=6), max_size=8))
def test_replay_equals_live_projections_with_a_writer_process(
    batches: list[list[NewEvent]],
) -> None:
    check_replay(_open_sqlite_process, PROJECTIONS, batches)


# -- the same property on the domain's projections, with events shaped like the real ones -----

try:
    from reconcilers.projections import PROJECTIONS as DOMAIN_PROJECTIONS
except ImportError:  # the projections are written concurrently; run when they exist
    DOMAIN_PROJECTIONS = ()

_details = {
    1: st.fixed_dictionaries({"errorLevel": st.sampled_from([3, 5]), "errorCode": st.just(50)}),
    3: st.fixed_dictionaries({"status": st.sampled_from([1, 4, 5, 6, 8, 20])}),
    11: st.fixed_dictionaries({"exitStatus": st.sampled_from([0, 1])}),
    12: st.fixed_dictionaries({"newUid": st.integers(1, 5)}),
    31: st.fixed_dictionaries(
        {"status": st.just(0), "fileList": st.just([{"fileName": "a.m3u8", "uid": "0"}])}
    ),
    33: st.fixed_dictionaries({"progress": st.integers(0, 10000)}),
    40: st.just({"status": 0}),
    41: st.fixed_dictionaries({"leaveCode": st.sampled_from([4, 6, 16])}),
    42: st.fixed_dictionaries({"startUtcMs": st.integers(0, 10**6)}),
    999: st.just({}),
}


@st.composite
def _agora(draw: st.DrawFn) -> NewEvent:
    from reconcilers.providers.agora.notifications import parse_notification
    from service.webhooks.agora import to_event

    notice = draw(st.sampled_from([f"n{i}" for i in range(10)]))
    if draw(st.booleans()):
        event_type = draw(st.sampled_from(sorted(_details)))
        body = {
            "noticeId": notice,
            "productId": 3,
            "eventType": event_type,
            "payload": {
                "cname": draw(st.sampled_from(["c1", "c2"])),
                "uid": "4000000001",
                "sid": draw(st.sampled_from(["s1", "s2"])),
                "sequence": draw(st.integers(0, 50)),
                "sendts": 1_700_000_000_000 + draw(st.integers(0, 10**6)),
                "details": draw(_details[event_type]),
            },
        }
    else:
        body = {
            "noticeId": notice,
            "productId": 1,
            "eventType": draw(st.sampled_from([101, 102, 103, 104, 105, 106, 107, 108, 111, 112])),
            "payload": {
                "channelName": draw(st.sampled_from(["c1", "c2"])),
                "uid": draw(st.integers(1, 3)),
                "platform": draw(st.sampled_from([1, 6])),
                "clientType": draw(st.sampled_from([0, 10])),
                "clientSeq": draw(st.integers(0, 20)),
                "ts": 1_700_000_000 + draw(st.integers(0, 1000)),
            },
        }
    return to_event(parse_notification(body), body)


@st.composite
def _control(draw: st.DrawFn) -> NewEvent:
    room = draw(st.sampled_from(["t/r1", "t/r2"]))
    channel = "c1" if room == "t/r1" else "c2"
    sid = draw(st.sampled_from(["s1", "s2"]))
    segment = draw(st.integers(0, 8))
    kind, payload = draw(
        st.sampled_from(
            [
                ("room.desired", {"tenant": "t", "name": room[2:], "spec": {"state": "recording"}}),
                ("room.deleted", {}),
                ("intent.reserve", {"segment": segment, "uid": 4_000_000_000 + segment}),
                ("intent.start", {"segment": segment, "resource_id": "res"}),
                ("result.start", {"segment": segment, "sid": sid, "channel": channel}),
                ("result.start", {"segment": segment, "outcome": "rejected", "generation": 1}),
                ("observed.query", {"sid": sid, "state": "recording"}),
                ("observed.query", {"sid": sid, "not_found": True}),
                ("result.stop", {"sid": sid}),
            ]
        )
    )
    if kind == "room.desired":
        payload = {**payload, "channel_key": f"agora/{channel}"}
    source = "api" if kind.startswith("room.") else "reconciler"
    key = draw(st.sampled_from([f"i{i}" for i in range(10)]))
    return NewEvent(source, key, kind, payload, room=room)


@st.composite
def _catalog(draw: st.DrawFn) -> NewEvent:
    """The catalog's events: its API actions, stop results with files, storage events."""
    rid = draw(st.sampled_from(["rec1", "rec2"]))
    sid = draw(st.sampled_from(["s1", "s2"]))
    key = draw(st.sampled_from(["a.m3u8", "a_1.ts", "b.mp4"]))
    kind = draw(
        st.sampled_from(
            [
                "started",
                "stopped",
                "archived",
                "deleted",
                "failed",
                "stop",
                "created",
                "removed",
                "checked",
            ]
        )
    )
    dedup = draw(st.sampled_from([f"c{i}" for i in range(10)]))
    at = _base + timedelta(seconds=draw(st.integers(0, 1000)))
    if kind in ("created", "removed", "checked"):
        payload = {
            "bucket": "b",
            "key": key,
            "size": draw(st.integers(0, 99)),
            "sequencer": draw(st.sampled_from([None, "0A", "0B", "0A1"])),
            "present": draw(st.booleans()),
        }
        type_ = "storage.checked" if kind == "checked" else f"storage.object_{kind}"
        return NewEvent("storage", dedup, type_, payload, occurred_at=at)
    if kind == "stop":
        payload = {
            "sid": sid,
            "files": [key],
            "upload_status": "uploaded",
            "outcome": draw(st.sampled_from([None, "ended"])),
            "code": 435,
        }
        return NewEvent("reconciler", dedup, "result.stop", payload, room="t/r1", occurred_at=at)
    payload = {"recording_id": rid, "channel_key": "agora/c1", "reason": "files_lost"}
    return NewEvent("api", dedup, f"recording.{kind}", payload, room="t/r1", occurred_at=at)


@pytest.mark.skipif(not DOMAIN_PROJECTIONS, reason="reconcilers.projections.PROJECTIONS missing")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.lists(st.one_of(_agora(), _control(), _catalog()), min_size=1, max_size=6))
)
def test_replay_equals_live_domain_projections(batches: list[list[NewEvent]]) -> None:
    check_replay(BACKENDS["sqlite"], DOMAIN_PROJECTIONS, batches)


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
