"""``recctl compact``: old events exported, then deleted; open recordings keep theirs; a replay
from the snapshot gives the projections a replay of the whole log gave; nothing is deleted
without an export unless asked; the log stays append-only outside a compaction."""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from reconcilers.events import NewEvent
from reconcilers.projections import PROJECTIONS
from service import cli
from service.commands.compact import BucketExport, DirectoryExport, compact_sqlite
from service.store.sqlite import SqliteStore
from service.store.sqlite.writer import SqliteWriter
from tests.bench.traffic import START, build_store, room_key
from tests.catalog_harness import BUCKET, moto_server, s3_client

EVENTS = 4000  # ~80 s of the traffic's time
CUTOFF = START + timedelta(seconds=40)
NOW = CUTOFF + timedelta(days=2)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    build_store(path, 8, EVENTS, seed=5)
    writer = SqliteWriter(path, PROJECTIONS)  # a recording of one room, open since the start
    writer.open()
    try:
        payload = {"recording_id": "rec_open", "channel_key": "agora/ch-00000", "sids": []}
        started = NewEvent("api", "open", "recording.started", payload, room=room_key(0),
                           occurred_at=START, received_at=NOW)
        writer.write([started])
    finally:
        writer.close()
    return path


def projection_rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT projection, key, room, data FROM projections ORDER BY 1, 2"
        ).fetchall()


def events(path: Path) -> list[tuple[int, str, str | None, str | None]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT seq, received_at, room, session FROM events ORDER BY seq"
        ).fetchall()


async def replayed(path: Path) -> int:
    store = await SqliteStore.open(path, PROJECTIONS)
    try:
        return await store.replay()
    finally:
        await store.close()


def test_old_events_are_exported_then_deleted_and_a_replay_starts_from_the_snapshot(
    log: Path, tmp_path: Path
) -> None:
    asyncio.run(replayed(log))  # the whole log's replay: the reference
    reference = projection_rows(log)
    before = events(log)
    report = compact_sqlite(str(log), PROJECTIONS, 2, DirectoryExport(tmp_path / "out"), now=NOW)
    after = events(log)
    assert report.exported == report.deleted == len(before) - len(after) > 1000
    assert report.kept_open > 0 and report.folded == report.snapshot_seq > 0
    assert all(e in after for e in before if e[1] >= CUTOFF.isoformat())  # young: all kept
    old_left = [e for e in after if e[0] <= report.snapshot_seq]
    assert len(old_left) == report.kept_open  # old ones kept: the open recording's room's
    assert {e[2] for e in old_left} == {room_key(0)}
    (exported,) = (tmp_path / "out").iterdir()
    lines = [json.loads(line) for line in gzip.decompress(exported.read_bytes()).splitlines()]
    gone = sorted(set(e[0] for e in before) - set(e[0] for e in after))
    assert [line["seq"] for line in lines] == gone
    assert set(lines[0]) >= {"seq", "source", "dedup_key", "type", "payload", "received_at"}
    assert projection_rows(log) == reference  # the live rows are untouched
    folded = asyncio.run(replayed(log))
    assert folded == len([e for e in after if e[0] > report.snapshot_seq])
    assert projection_rows(log) == reference  # and a replay from the snapshot gives them back

    later = compact_sqlite(
        str(log), PROJECTIONS, 2, DirectoryExport(tmp_path / "out"), now=NOW + timedelta(seconds=20)
    )
    assert later.snapshot_seq > report.snapshot_seq and later.deleted > 0
    asyncio.run(replayed(log))
    assert projection_rows(log) == reference


def test_nothing_is_deleted_without_an_export_and_the_log_stays_append_only(log: Path) -> None:
    before = events(log)
    with pytest.raises(ValueError, match="export"):
        compact_sqlite(str(log), PROJECTIONS, 2, None, now=NOW)
    dry = compact_sqlite(str(log), PROJECTIONS, 2, None, dry_run=True, now=NOW)
    assert dry.deleted > 0 and events(log) == before
    with sqlite3.connect(log) as conn, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM events WHERE seq = 1")
    discarded = compact_sqlite(str(log), PROJECTIONS, 2, None, discard=True, now=NOW)
    assert discarded.deleted == dry.deleted and len(events(log)) == len(before) - dry.deleted


def test_old_events_go_to_a_storage_profile(log: Path) -> None:
    with moto_server() as endpoint:
        client = s3_client(endpoint)
        client.create_bucket(Bucket=BUCKET)
        export = BucketExport(client, BUCKET, "acme/")
        report = compact_sqlite(str(log), PROJECTIONS, 2, export, now=NOW)
        (where,) = report.exported_to
        key = where.removeprefix(f"s3://{BUCKET}/")
        assert key.startswith("acme/event-log/events-")
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert len(gzip.decompress(body).splitlines()) == report.deleted > 0


def test_recctl_compact(
    log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{log}")
    assert cli.main(["compact", "--retention-days", "1"]) == 2  # no export, no --discard
    assert "export" in capsys.readouterr().err
    monkeypatch.setenv("EVENT_RETENTION_DAYS", "1")
    assert cli.main(["compact", "--export-dir", str(tmp_path / "x")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["deleted"] > 0 and report["exported_to"][0].startswith(str(tmp_path / "x"))
