"""What every store backend shares: one error hierarchy, and counters the service can observe.

The domain's :class:`reconcilers.events.Store` is the port; this module holds the service-side
extras that are not the domain's business (metrics hooks, driver errors mapped to one type).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import structlog

from reconcilers.events import Event, Store
from service.store.errors import StoreClosed, StoreError

__all__ = [
    "BatchObserver",
    "BatchReport",
    "ObservableStore",
    "StoreClosed",
    "StoreError",
    "StoreStats",
    "log",
]

log = structlog.get_logger("store")


@dataclass(frozen=True)
class BatchReport:
    """One committed write transaction of the group-commit writer."""

    size: int  # appends resolved by this transaction, duplicates included
    appended: Sequence[Event]  # the new events, in seq order
    seconds: float  # from BEGIN to COMMIT returning (the fsync included)
    sync_seconds: float = 0.0  # the COMMIT alone, timed by the writer: the disk's share


BatchObserver = Callable[[BatchReport], None]


@dataclass
class StoreStats:
    """Counters a backend keeps so tests and metrics can see group commit at work."""

    commits: int = 0  # write transactions committed (append batches and replays)
    batches: int = 0  # append batches committed
    appended: int = 0  # new events stored
    duplicates: int = 0  # appends answered with an earlier copy
    failed_batches: int = 0  # batches rolled back
    checkpoints: int = 0  # background WAL checkpoints completed (SQLite)
    observers: list[BatchObserver] = field(default_factory=list)

    def committed(self, report: BatchReport) -> None:
        self.commits += 1
        self.batches += 1
        self.appended += len(report.appended)
        self.duplicates += report.size - len(report.appended)
        for observer in self.observers:
            try:
                observer(report)
            except Exception:  # an observer must never fail an acknowledged append
                log.exception("batch observer failed")


@runtime_checkable
class ObservableStore(Store, Protocol):
    """A store that exposes :class:`StoreStats` (every backend in ``service.store`` does)."""

    stats: StoreStats
