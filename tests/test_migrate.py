"""``recctl migrate`` (both backends) and ``recctl migrate-store`` (SQLite -> PostgreSQL): the
copy is exact, a rerun changes nothing, an interrupted copy resumes, another log is refused,
and the projections rebuilt on the destination equal a replay of the source."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
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
    url = f"sqlite:///{path}"

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


def _source_state(url: str) -> tuple[list[object], dict[object, object]]:
    async def run() -> tuple[list[object], dict[object, object]]:
        store = await open_store(url, PROJECTIONS)
        try:
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
