"""The store contract: every test here runs against every backend (SQLite, with its writer on a
thread and in a process, and PostgreSQL on the real server the session starts).

A new backend adds its place in ``tests/support/store_cases.py`` (``BACKENDS``): every contract
test and the replay property then run against it too. What only one backend has is tested in
``test_sqlite.py`` and ``test_postgres.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcilers.events import Fold, NewEvent, Projection, Row, Store
from service.store import BatchReport, ObservableStore, StoreClosed, StoreError
from service.store.base import DurabilityReporting
from tests.helpers import Boom
from tests.support.pg_server import PostgresServer
from tests.support.store_cases import (
    BACKENDS,
    PROJECTIONS,
    Place,
    RoomTally,
    all_rows,
    as_stored,
    fresh_place,
    new,
    sqlite_place,
)


@pytest.fixture(params=BACKENDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    """Where this test's store lives: a fresh SQLite file, or a fresh PostgreSQL database."""
    backend: str = request.param
    if backend == "postgresql":
        return Place(backend, request.getfixturevalue("postgres_db"))
    return sqlite_place(backend, tmp_path)


@pytest.fixture
async def store(place: Place) -> AsyncIterator[ObservableStore]:
    opened = await place.open(PROJECTIONS)
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

    async def test_replay_fills_a_projection_added_later(self, place: Place) -> None:
        first = await place.open([RoomTally()])
        await first.append(new("k1", session="s1"))
        await first.close()
        second = await place.open(PROJECTIONS)
        try:
            assert await second.get_row("session_types", "s1:*") is None
            assert await second.replay() == 1
            assert await second.get_row("session_types", "s1:*") is not None
        finally:
            await second.close()

    async def test_events_survive_reopening(self, place: Place) -> None:
        first = await place.open(PROJECTIONS)
        appended = await first.append(new("k1", occurred_at=datetime(2024, 1, 1)))
        await first.close()
        second = await place.open(PROJECTIONS)
        try:
            assert await second.read_log() == [appended.event]
            assert (await second.append(new("k1"))).duplicate
            assert (await second.append(new("k2"))).event.seq == 2
        finally:
            await second.close()

    async def test_close_commits_everything_already_queued(self, place: Place) -> None:
        opened = await place.open(PROJECTIONS)
        pending = [asyncio.ensure_future(opened.append(new(f"k{i}"))) for i in range(50)]
        await asyncio.sleep(0)  # let every append reach the queue before close() does
        await opened.close()
        assert all(not p.result().duplicate for p in pending)
        with pytest.raises(StoreClosed):
            await opened.append(new("late"))
        with pytest.raises(StoreError):
            await opened.ping()
        reopened = await place.open(PROJECTIONS)
        try:
            assert len(await reopened.read_log()) == 50
        finally:
            await reopened.close()

    async def test_ping(self, store: Store) -> None:
        await store.ping()

    async def test_a_failed_batch_fails_every_caller_and_stores_nothing(self, place: Place) -> None:
        broken = await place.open([Boom(always=True)])
        try:
            results = await asyncio.gather(
                *(broken.append(new(f"k{i}")) for i in range(20)), return_exceptions=True
            )
            assert all(isinstance(r, StoreError) for r in results)
            assert await broken.read_log() == []
        finally:
            await broken.close()

    async def test_a_poison_event_fails_alone(self, place: Place) -> None:
        guarded = await place.open([Boom(), RoomTally()])
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


async def test_the_store_says_what_an_acknowledgement_rests_on(store: ObservableStore) -> None:
    assert isinstance(store, DurabilityReporting)
    assert await store.durability() in (
        "synchronous=FULL journal_mode=wal",  # SQLite: fsync at every commit
        "synchronous_commit=on fsync=on",  # PostgreSQL: the WAL flushed before COMMIT returns
    )


async def test_each_batch_reports_its_fsync_apart_from_the_round_trip(place: Place) -> None:
    """The writer times its COMMIT beside the disk, so a slow disk can be told apart from a
    slow hop to the writer: the part is never more than the whole, and never nothing."""
    store = await place.open(PROJECTIONS)
    reports: list[BatchReport] = []
    store.stats.observers.append(reports.append)
    try:
        for i in range(5):
            await store.append(new(f"k{i}"))
        assert len(reports) == 5
        assert all(0 < r.sync_seconds <= r.seconds for r in reports), reports
    finally:
        await store.close()


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
    backend: str,
    server: PostgresServer | None,
    projections: Sequence[Projection],
    batches: list[list[NewEvent]],
) -> None:
    """Live rows == rows after replay() == an in-memory Fold of the stored log."""

    async def scenario(place: Place) -> None:
        store = await place.open(projections)
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

    with fresh_place(backend, server) as place:
        asyncio.run(scenario(place))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(_generic_event, min_size=1, max_size=6), max_size=8))
def test_replay_equals_live_projections(batches: list[list[NewEvent]]) -> None:
    check_replay("sqlite", None, PROJECTIONS, batches)


# Each example is a database of its own (~0.3 s to create, migrate, fill and drop): fewer of
# them; the fold is the same code as SQLite's.
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(_generic_event, min_size=1, max_size=6), max_size=8))
def test_replay_equals_live_projections_on_postgresql(
    postgres_server: PostgresServer, batches: list[list[NewEvent]]
) -> None:
    check_replay("postgresql", postgres_server, PROJECTIONS, batches)


# Each example starts a writer process (~0.3 s): fewer of them; the fold is the same code.
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(_generic_event, min_size=1, max_size=6), max_size=8))
def test_replay_equals_live_projections_with_a_writer_process(
    batches: list[list[NewEvent]],
) -> None:
    check_replay("sqlite-process", None, PROJECTIONS, batches)


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
    check_replay("sqlite", None, DOMAIN_PROJECTIONS, batches)


@pytest.mark.skipif(not DOMAIN_PROJECTIONS, reason="reconcilers.projections.PROJECTIONS missing")
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.lists(st.one_of(_agora(), _control(), _catalog()), min_size=1, max_size=6))
)
def test_replay_equals_live_domain_projections_on_postgresql(
    postgres_server: PostgresServer, batches: list[list[NewEvent]]
) -> None:
    check_replay("postgresql", postgres_server, DOMAIN_PROJECTIONS, batches)
