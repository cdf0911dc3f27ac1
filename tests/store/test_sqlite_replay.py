"""A long replay folds its projections in worker processes: the rows are exactly those one fold
in the writer gives, from the start of the log and from a snapshot, live or replayed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from reconcilers.events import Projection
from reconcilers.projections import PROJECTIONS
from service.commands.compact import compact_sqlite
from service.store.sqlite import SqliteStore
from service.store.sqlite import replay as sqlite_replay
from tests.bench.traffic import START, build_store


def rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM projections ORDER BY projection, key").fetchall()


def replay(path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool) -> int:
    """A replay through the store, asserting which way it folded."""
    monkeypatch.setattr(sqlite_replay, "PARALLEL_MIN_EVENTS", 0 if parallel else 10**12)
    workers: list[int] = []
    fold_in_workers = sqlite_replay.fold_in_workers

    def spy(path: str, projections: Sequence[Projection], count: int) -> tuple[int, list[Any]]:
        workers.append(count)
        return fold_in_workers(path, projections, count)

    monkeypatch.setattr(sqlite_replay, "fold_in_workers", spy)

    async def run() -> int:
        store = await SqliteStore.open(path, PROJECTIONS)
        try:
            return await store.replay()
        finally:
            await store.close()

    folded = asyncio.run(run())
    assert workers == ([min(os.cpu_count() or 1, 4)] if parallel else [])
    return folded


def test_workers_fold_the_rows_one_fold_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.db"
    build_store(path, 12, 3000, seed=11)
    live = rows(path)
    assert len(live) > 50
    assert replay(path, monkeypatch, parallel=True) == replay(path, monkeypatch, parallel=False)
    serial = rows(path)
    assert serial == live
    folded = replay(path, monkeypatch, parallel=True)
    assert folded > 2900 and rows(path) == live

    report = compact_sqlite(
        str(path), PROJECTIONS, 2, None, discard=True, now=START + timedelta(seconds=30, days=2)
    )
    assert report.deleted > 0 and report.snapshot_seq > 0
    assert replay(path, monkeypatch, parallel=True) < folded  # from the snapshot on
    assert rows(path) == live


def test_small_logs_and_single_cores_fold_in_the_writer() -> None:
    assert sqlite_replay.worker_count(10, 10, cpus=8) == 1
    assert sqlite_replay.worker_count(10**6, 10, cpus=1) == 1
    assert sqlite_replay.worker_count(10**6, 10, cpus=2) == 2
    assert sqlite_replay.worker_count(10**6, 10, cpus=64) == sqlite_replay.MAX_WORKERS
    assert sqlite_replay.worker_count(10**6, 2, cpus=64) == 2


def test_groups_deal_every_projection_once_in_order() -> None:
    parts = sqlite_replay.groups(PROJECTIONS, 3)
    assert len(parts) == 3
    assert sorted((p for part in parts for p in part), key=PROJECTIONS.index) == list(PROJECTIONS)
    assert all(part == sorted(part, key=PROJECTIONS.index) for part in parts)
