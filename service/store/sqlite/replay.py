"""A replay's fold, split by projection over worker processes.

A projection's rows depend on the events and on its own rows only (:class:`Fold` hands each
projection its own row), so folding the log once per group of projections, in separate
processes, gives exactly the rows one fold gives. Each worker reads the log itself (through
its own read connection, which sees what the replaying writer sees: the writer holds the write
lock, and its uncommitted ``DELETE`` of the projections is not read) and sends back its rows
encoded as the writer will insert them.

Measured on the history bench's 967,039-event log on this 2-core machine: reading and decoding
the events is ~30 % of a serial replay, the projections' Python the rest (the sessions fold
alone a third of it); see ``docs/benchmarks.md``.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sqlite3
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, Final

from reconcilers.events import Fold, Projection
from service.store.sqlite import schema as sql

PAGE: Final = 5000
PARALLEL_MIN_EVENTS: Final = 50_000
"""Below this many events to fold, one fold in the writer beats starting worker processes
(each spawn imports the domain: ~0.3 s)."""
MAX_WORKERS: Final = 4
"""Every worker reads and decodes the whole log: past a few, more workers add reading, not
speed."""

RowParams = tuple[Any, ...]


def worker_count(events: int, projections: int, cpus: int | None = None) -> int:
    """How many processes fold ``events`` over ``projections`` (1: in the writer itself)."""
    if events < PARALLEL_MIN_EVENTS:
        return 1
    return max(1, min(cpus or os.cpu_count() or 1, projections, MAX_WORKERS))


def groups(projections: Sequence[Projection], count: int) -> list[list[Projection]]:
    """``count`` groups dealt round-robin, keeping each projection's order."""
    return [list(projections[i::count]) for i in range(count) if projections[i::count]]


@contextmanager
def gc_paused() -> Iterator[None]:
    """A fold allocates millions of short-lived acyclic values; the cyclic collector's passes
    over the growing rows cost ~10 % of a 1M-event replay and reclaim nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def fold_log(conn: sqlite3.Connection, fold: Fold, after: int) -> int:
    """Fold every event after seq ``after`` into ``fold``, in seq order; return how many."""
    count = 0
    page_sql = f"{sql.SELECT_EVENTS} WHERE seq > ? ORDER BY seq LIMIT ?"
    with gc_paused():
        while page := conn.execute(page_sql, (after, PAGE)).fetchall():
            for event in map(sql.event_of, page):
                fold.apply(event)
            count += len(page)
            after = page[-1][0]
    return count


def snapshot_fold(conn: sqlite3.Connection, projections: Sequence[Projection]) -> tuple[Fold, int]:
    """A fold holding the snapshot's rows of ``projections``, and the seq they are as of (0: no
    snapshot)."""
    fold = Fold(projections)
    taken = snapshot_seq(conn)
    if taken:
        names = {p.name for p in projections}
        for r in conn.execute(f"SELECT {sql.ROW_COLUMNS} FROM snapshot_rows"):
            if r[0] in names:
                fold.rows[(r[0], r[1])] = sql.row_of(r)
    return fold, taken


def snapshot_seq(conn: sqlite3.Connection) -> int:
    """The seq the snapshot's rows are as of (0: no snapshot)."""
    taken = conn.execute("SELECT seq FROM snapshot WHERE id = 1").fetchone()
    return 0 if taken is None else int(taken[0])


def fold_group(path: str, projections: Sequence[Projection]) -> tuple[int, list[RowParams]]:
    """A worker's whole job: its projections' rows from the snapshot and the log after it."""
    conn = sqlite3.connect(path)
    try:
        fold, after = snapshot_fold(conn, projections)
        count = fold_log(conn, fold, after)
    finally:
        conn.close()
    return count, [sql.row_params(k, r) for k, r in fold.rows.items()]


def fold_in_workers(
    path: str, projections: Sequence[Projection], workers: int
) -> tuple[int, list[RowParams]]:
    """The rows of every projection, folded by ``workers`` spawned processes (spawned, not
    forked: the writer may be a thread of a process with an event loop and other threads)."""
    parts = groups(projections, workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(parts), mp_context=context) as pool:
        results = list(pool.map(fold_group, [path] * len(parts), parts))
    return results[0][0], [params for _, rows in results for params in rows]
