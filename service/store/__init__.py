"""Event-log backends. :func:`open_store` picks one from ``DATABASE_URL``'s scheme, here only.

``sqlite:///path`` is the embedded default (one process, one file); ``postgresql://...`` is the
server backend several replicas share (:mod:`service.store.postgres`). Both pass the same
contract suite (``tests/store/test_contract.py``); what else a backend can do is a capability
in :mod:`service.store.base`.

The names below are imported on first use (PEP 562): the SQLite writer's child process
imports this package on its way to the writer, and needs none of the async side.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any

from reconcilers.events import Projection
from service.store.errors import StaleFence, StoreClosed, StoreError
from service.store.sqlite.schema import sqlite_path

if TYPE_CHECKING:
    from service.store.base import BatchObserver, BatchReport, ObservableStore, StoreStats
    from service.store.postgres import PoolLimits, PostgresStore
    from service.store.sqlite.store import SqliteStore

_LAZY = {
    "BatchObserver": "service.store.base",
    "BatchReport": "service.store.base",
    "ObservableStore": "service.store.base",
    "StoreStats": "service.store.base",
    "SqliteStore": "service.store.sqlite.store",
    "PostgresStore": "service.store.postgres",
    "PoolLimits": "service.store.postgres",
}

POSTGRES_SCHEMES = ("postgresql", "postgres")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BatchObserver",
    "BatchReport",
    "ObservableStore",
    "PoolLimits",
    "PostgresStore",
    "SqliteStore",
    "StaleFence",
    "StoreClosed",
    "StoreError",
    "StoreStats",
    "backend_of",
    "check_url",
    "open_store",
]


def backend_of(url: str) -> str:
    """``"sqlite"`` or ``"postgresql"``: the backend ``url`` names. Raises ``ValueError``."""
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        sqlite_path(url)
        return "sqlite"
    if scheme in POSTGRES_SCHEMES:
        from service.store.postgres.sql import postgres_dsn

        postgres_dsn(url)
        return "postgresql"
    raise ValueError(
        f"unsupported scheme {scheme!r}; expected sqlite:///<path> or postgresql://host/db"
    )


def check_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` names a backend we have (checked before serving)."""
    backend_of(url)


async def open_store(
    url: str,
    projections: Sequence[Projection] = (),
    *,
    writer_process: bool = False,
    batch_interval: float | None = None,
    pool: PoolLimits | None = None,
    append_timeout: float | None = None,
) -> ObservableStore:
    """Open the store named by ``url`` (its schema migrated) and start its writer. Raises
    ``ValueError`` on a bad URL, ``StoreError`` when the database cannot be reached.

    ``writer_process``: SQLite's writer gets a process of its own (``STORE_WRITER=process``).
    ``batch_interval``: seconds between two group commits at least (``STORE_BATCH_INTERVAL_MS``;
    ``None``: the backend's default). ``pool``: PostgreSQL's connection pool limits (``None``:
    ``DATABASE_POOL_*`` from the environment, else the defaults). ``append_timeout``: seconds
    an append may take before it fails with ``AppendTimedOut`` (SQLite; ``None``: the default).
    """
    if backend_of(url) == "postgresql":
        from service.store.postgres import PoolLimits, PostgresStore
        from service.store.postgres.store import DEFAULT_BATCH_INTERVAL as PG_INTERVAL

        return await PostgresStore.open(
            url,
            projections,
            limits=pool or PoolLimits.from_env(),
            batch_interval=PG_INTERVAL if batch_interval is None else batch_interval,
        )
    from service.store.sqlite.store import (
        DEFAULT_APPEND_TIMEOUT,
        DEFAULT_BATCH_INTERVAL,
        SqliteStore,
    )

    if batch_interval is None:
        batch_interval = DEFAULT_BATCH_INTERVAL
    return await SqliteStore.open(
        sqlite_path(url),
        projections,
        batch_interval=batch_interval,
        writer_process=writer_process,
        append_timeout=DEFAULT_APPEND_TIMEOUT if append_timeout is None else append_timeout,
    )
