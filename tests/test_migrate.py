"""``recctl migrate`` (both backends) and ``recctl migrate-store`` (SQLite -> PostgreSQL and
PostgreSQL -> SQLite): the copy is exact, a rerun changes nothing, an interrupted copy resumes,
another log is refused, and the projections rebuilt on the destination equal a replay of the
source."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from reconcilers.events import NewEvent
from service import cli
from service.commands.common import UserError
from service.commands.migrate import Advance, copy_log, migrate_database
from service.store import open_store
from service.store.sqlite.schema import SCHEMA
from tests.support.store_cases import PROJECTIONS, all_rows, new


def test_migrate_versions_a_new_sqlite_file_and_reruns_as_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    first = asyncio.run(migrate_database(url))
    assert (first.backend, first.applied, first.version) == ("sqlite", [1, 2], 2)
    again = asyncio.run(migrate_database(url))
    assert (again.applied, again.version) == ([], 2)


def test_a_sqlite_file_made_before_versioning_adopts_version_1_then_2(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(SCHEMA)
        old.execute(
            "INSERT INTO events (seq, source, dedup_key, type, payload, received_at)"
            " VALUES (1, 'api', 'k', 't', '{}', '2024-01-01T00:00:00+00:00')"
        )
        old.commit()
    report = asyncio.run(migrate_database(f"sqlite:///{path}"))
    assert report.applied == [1, 2]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,), (2,)]
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (1,)


def test_recctl_migrate_on_postgresql(
    postgres_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_db)
    assert cli.main(["migrate"]) == 0
    assert capsys.readouterr().out == "postgresql: schema version 2; applied 1, 2\n"
    assert cli.main(["migrate", "-o", "jsonl"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "backend": "postgresql",
        "applied": [],
        "version": 2,
    }


def _seed_sqlite(path: Path, count: int) -> str:
    """A SQLite log of ``count`` events, some with their payload's text as received."""
    return _seed(f"sqlite:///{path}", count)


def _seed(url: str, count: int) -> str:
    """A log of ``count`` events at ``url``, some with their payload's text as received."""

    async def run() -> None:
        store = await open_store(url, PROJECTIONS)
        try:
            for i in range(count):
                event = new(f"k{i}", type_="reset" if i % 17 == 16 else "a", session=f"s{i % 4}")
                if i % 3 == 0:  # a webhook's body as it came: spaces and all
                    raw = f'{{ "group" : "g{i % 2}",  "key": "k{i}" }}'
                    event = NewEvent(
                        event.source,
                        event.dedup_key,
                        event.type,
                        json.loads(raw),
                        room=event.room,
                        session=event.session,
                        raw=raw,
                    )
                await store.append(event)
        finally:
            await store.close()

    asyncio.run(run())
    return url


def _source_state(url: str, replay: bool = True) -> tuple[list[object], dict[object, object]]:
    """The log at ``url`` and its rows (replayed first, unless ``replay`` is false: as left)."""

    async def run() -> tuple[list[object], dict[object, object]]:
        store = await open_store(url, PROJECTIONS)
        try:
            if replay:
                await store.replay()
            return list(await store.read_log(limit=10_000)), dict(
                await all_rows(store, PROJECTIONS)
            )
        finally:
            await store.close()

    return asyncio.run(run())


async def _target_state(dsn: str) -> tuple[list[object], dict[object, object], list[str]]:
    store = await open_store(dsn, PROJECTIONS)
    try:
        log = list(await store.read_log(limit=10_000))
        rows = dict(await all_rows(store, PROJECTIONS))
    finally:
        await store.close()
    conn = await asyncpg.connect(dsn)
    try:
        texts = [r[0] for r in await conn.fetch("SELECT payload::text FROM events ORDER BY seq")]
    finally:
        await conn.close()
    return log, rows, texts


async def _pg_texts(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r[0] for r in await conn.fetch("SELECT payload::text FROM events ORDER BY seq")]
    finally:
        await conn.close()


def _sqlite_texts(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [r[0] for r in conn.execute("SELECT payload FROM events ORDER BY seq")]


def test_migrate_store_copies_exactly_and_a_rerun_is_a_no_op(
    tmp_path: Path, postgres_db: str
) -> None:
    url = _seed_sqlite(tmp_path / "old.db", 120)
    first = asyncio.run(copy_log(url, postgres_db, PROJECTIONS, page=50))
    assert (first.copied, first.events, first.folded) == (120, 120, 120)
    source_log, source_rows = _source_state(url)
    log, rows, texts = asyncio.run(_target_state(postgres_db))
    assert log == source_log  # seq for seq
    assert texts == _sqlite_texts(tmp_path / "old.db")  # payload text as stored
    assert rows == source_rows and rows  # the rebuilt projections equal a replay of the source
    again = asyncio.run(copy_log(url, postgres_db, PROJECTIONS, page=50))
    assert (again.copied, again.events) == (0, 120)
    assert asyncio.run(_target_state(postgres_db)) == (log, rows, texts)


class Interrupted(Exception):
    pass


def test_an_interrupted_copy_resumes_where_it_stopped(tmp_path: Path, postgres_db: str) -> None:
    url = _seed_sqlite(tmp_path / "old.db", 100)
    calls: list[tuple[int, int]] = []

    def stop_after_two_pages(total: int, done: int) -> Advance:
        calls.append((total, done))
        pages = 0

        def advance(n: int) -> None:
            nonlocal pages
            pages += 1
            if pages == 2 and len(calls) == 1:
                raise Interrupted  # as a ^C after the second page's commit

        return advance

    with pytest.raises(Interrupted):
        asyncio.run(copy_log(url, postgres_db, PROJECTIONS, page=30, advance=stop_after_two_pages))
    resumed = asyncio.run(
        copy_log(url, postgres_db, PROJECTIONS, page=30, advance=stop_after_two_pages)
    )
    assert calls == [(100, 0), (40, 60)]
    assert (resumed.copied, resumed.events) == (40, 100)
    source_log, source_rows = _source_state(url)
    log, rows, _ = asyncio.run(_target_state(postgres_db))
    assert [e.seq for e in log] == list(range(1, 101))  # type: ignore[attr-defined]
    assert log == source_log and rows == source_rows


def test_a_destination_holding_another_log_is_refused(tmp_path: Path, postgres_db: str) -> None:
    url = _seed_sqlite(tmp_path / "old.db", 5)

    async def other_log() -> None:
        store = await open_store(postgres_db, PROJECTIONS)
        try:
            await store.append(new("not-from-the-source"))
        finally:
            await store.close()

    asyncio.run(other_log())
    with pytest.raises(UserError, match="holds another log"):
        asyncio.run(copy_log(url, postgres_db, PROJECTIONS))
    log, _, _ = asyncio.run(_target_state(postgres_db))
    assert len(log) == 1


def test_a_compacted_source_is_refused(tmp_path: Path, postgres_db: str) -> None:
    from service.commands.compact import compact_sqlite
    from tests.bench.traffic import START, build_store

    path = tmp_path / "compacted.db"
    build_store(path, 4, 2000, seed=5)
    now = START + timedelta(seconds=20, days=2)
    assert compact_sqlite(str(path), PROJECTIONS, 2, None, discard=True, now=now).deleted > 0
    with pytest.raises(UserError, match="compacted"):
        asyncio.run(copy_log(f"sqlite:///{path}", postgres_db, PROJECTIONS))

    async def tables() -> object:
        conn = await asyncpg.connect(postgres_db)
        try:
            return await conn.fetchval("SELECT to_regclass('events')")
        finally:
            await conn.close()

    assert asyncio.run(tables()) is None  # nothing was written, not even the schema


def test_recctl_migrate_store(
    tmp_path: Path, postgres_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _seed_sqlite(tmp_path / "old.db", 10)
    assert cli.main(["migrate-store", "--from", url, "--to", postgres_db, "-o", "json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert (report["copied"], report["events"], report["folded"]) == (10, 10, 10)
    assert cli.main(["migrate-store", "--from", str(tmp_path / "nothing.db"), "--to", url]) == 2
    missing = f"sqlite:///{tmp_path / 'nothing.db'}"
    assert cli.main(["migrate-store", "--from", missing, "--to", postgres_db]) == 1
    assert "no event log" in capsys.readouterr().err


# -- PostgreSQL -> SQLite -------------------------------------------------------------------


def test_a_postgresql_log_comes_back_to_sqlite_exactly_and_a_rerun_is_a_no_op(
    tmp_path: Path, postgres_db: str
) -> None:
    _seed(postgres_db, 120)
    url = f"sqlite:///{tmp_path / 'back.db'}"
    first = asyncio.run(copy_log(postgres_db, url, PROJECTIONS, page=50))
    assert (first.copied, first.events, first.folded) == (120, 120, 120)
    source_log, source_rows = _source_state(postgres_db)
    log, rows = _source_state(url, replay=False)  # as the copy left them
    assert [(e.seq, e.source, e.dedup_key) for e in log] == [  # type: ignore[attr-defined]
        (e.seq, e.source, e.dedup_key)  # type: ignore[attr-defined]
        for e in source_log
    ]
    assert log == source_log  # seq for seq, every field
    assert _sqlite_texts(tmp_path / "back.db") == asyncio.run(_pg_texts(postgres_db))
    assert rows == source_rows and rows  # identical projections
    again = asyncio.run(copy_log(postgres_db, url, PROJECTIONS, page=50))
    assert (again.copied, again.events) == (0, 120)
    assert _source_state(url, replay=False) == (log, rows)


def test_an_interrupted_copy_to_sqlite_resumes_where_it_stopped(
    tmp_path: Path, postgres_db: str
) -> None:
    _seed(postgres_db, 100)
    url = f"sqlite:///{tmp_path / 'back.db'}"
    calls: list[tuple[int, int]] = []

    def stop_after_two_pages(total: int, done: int) -> Advance:
        calls.append((total, done))
        pages = 0

        def advance(n: int) -> None:
            nonlocal pages
            pages += 1
            if pages == 2 and len(calls) == 1:
                raise Interrupted

        return advance

    with pytest.raises(Interrupted):
        asyncio.run(copy_log(postgres_db, url, PROJECTIONS, page=30, advance=stop_after_two_pages))
    resumed = asyncio.run(
        copy_log(postgres_db, url, PROJECTIONS, page=30, advance=stop_after_two_pages)
    )
    assert calls == [(100, 0), (40, 60)]
    assert (resumed.copied, resumed.events) == (40, 100)
    log, rows = _source_state(url, replay=False)
    assert [e.seq for e in log] == list(range(1, 101))  # type: ignore[attr-defined]
    assert (log, rows) == _source_state(postgres_db)


def test_a_sqlite_destination_that_a_service_serves_is_refused(
    tmp_path: Path, postgres_db: str
) -> None:
    from service.store.serve_lock import hold_serve_lock

    _seed(postgres_db, 3)
    path = tmp_path / "served.db"
    with hold_serve_lock(str(path)), pytest.raises(UserError, match="already served"):
        asyncio.run(copy_log(postgres_db, f"sqlite:///{path}", PROJECTIONS))
    assert not path.exists()


def test_recctl_migrate_store_back_to_sqlite(
    tmp_path: Path, postgres_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(postgres_db, 10)
    capsys.readouterr()  # the seeding's log
    url = f"sqlite:///{tmp_path / 'back.db'}"
    assert cli.main(["migrate-store", "--from", postgres_db, "--to", url, "-o", "json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert (report["copied"], report["events"], report["folded"]) == (10, 10, 10)
    assert cli.main(["migrate-store", "--from", postgres_db, "--to", "mysql://db/x"]) == 2
    assert "unsupported scheme" in capsys.readouterr().err
    assert cli.main(["migrate-store", "--from", url, "--to", url]) == 1
    assert "same log" in capsys.readouterr().err
    nowhere = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"
    assert cli.main(["migrate-store", "--from", postgres_db, "--to", nowhere]) == 1
    assert "no directory" in capsys.readouterr().err
