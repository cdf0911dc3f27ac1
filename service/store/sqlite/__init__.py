"""The SQLite backend: the embedded event log on one file, for one process.

``store`` is the async store; ``writer`` its write side, run by ``host`` in a thread or in the
``child`` process; ``schema`` and ``migrations`` the on-disk format; ``replay`` a long replay's
fold in worker processes. The names below are imported on first use (PEP 562), as in
:mod:`service.store`: the writer's child imports ``sqlite.child`` through this package, and
needs neither asyncio nor aiosqlite.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from service.store.sqlite.schema import sqlite_path

if TYPE_CHECKING:
    from service.store.sqlite.store import (
        DEFAULT_APPEND_TIMEOUT,
        DEFAULT_BATCH_CAP,
        DEFAULT_BATCH_INTERVAL,
        DEFAULT_CHECKPOINT_BYTES,
        SqliteStore,
    )
    from service.store.sqlite.writer import SqliteWriter

_LAZY = {
    "DEFAULT_APPEND_TIMEOUT": "service.store.sqlite.store",
    "DEFAULT_BATCH_CAP": "service.store.sqlite.store",
    "DEFAULT_BATCH_INTERVAL": "service.store.sqlite.store",
    "DEFAULT_CHECKPOINT_BYTES": "service.store.sqlite.store",
    "SqliteStore": "service.store.sqlite.store",
    "SqliteWriter": "service.store.sqlite.writer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_APPEND_TIMEOUT",
    "DEFAULT_BATCH_CAP",
    "DEFAULT_BATCH_INTERVAL",
    "DEFAULT_CHECKPOINT_BYTES",
    "SqliteStore",
    "SqliteWriter",
    "sqlite_path",
]
