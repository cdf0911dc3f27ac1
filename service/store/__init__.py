"""Event-log backends. :func:`open_store` picks one from ``DATABASE_URL``'s scheme.

SQLite is the embedded default; a PostgreSQL backend will be a sibling module of the same shape,
run through the same contract tests (``tests/test_store_sqlite.py``).

The names below are imported on first use (PEP 562): the SQLite writer's child process
imports this package on its way to the writer, and needs none of the async side.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any

from reconcilers.events import Projection
from service.store.errors import StaleFence, StoreClosed, StoreError
from service.store.sqlite_schema import sqlite_path

if TYPE_CHECKING:
    from service.store.base import BatchObserver, BatchReport, ObservableStore, StoreStats
    from service.store.sqlite import SqliteStore

_LAZY = {
    "BatchObserver": "service.store.base",
    "BatchReport": "service.store.base",
    "ObservableStore": "service.store.base",
    "StoreStats": "service.store.base",
    "SqliteStore": "service.store.sqlite",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BatchObserver",
    "BatchReport",
    "ObservableStore",
    "SqliteStore",
    "StaleFence",
    "StoreClosed",
    "StoreError",
    "StoreStats",
    "check_url",
    "open_store",
]


def check_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` names a backend we have (checked before serving)."""
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        sqlite_path(url)
    elif scheme in ("postgres", "postgresql"):
        raise ValueError("the PostgreSQL backend is not available yet; use sqlite:///<path>")
    else:
        raise ValueError(f"unsupported scheme {scheme!r}; expected sqlite:///<path>")


async def open_store(
    url: str,
    projections: Sequence[Projection] = (),
    *,
    writer_process: bool = False,
    batch_interval: float | None = None,
) -> ObservableStore:
    """Open the store named by ``url`` and start its writer. Raises ``ValueError`` on a bad URL.

    ``writer_process``: the writer gets a process of its own (``STORE_WRITER=process``).
    ``batch_interval``: seconds between two group commits at least (``STORE_BATCH_INTERVAL_MS``;
    ``None``: the backend's default).
    """
    from service.store.sqlite import DEFAULT_BATCH_INTERVAL, SqliteStore

    check_url(url)
    if batch_interval is None:
        batch_interval = DEFAULT_BATCH_INTERVAL
    return await SqliteStore.open(
        sqlite_path(url), projections, batch_interval=batch_interval, writer_process=writer_process
    )
