"""The store seam: what every backend shares, and the capabilities some of them add.

The domain's :class:`reconcilers.events.Store` is the port every backend implements (the
contract suite, ``tests/store/test_contract.py``, runs against each). Beside it, as
eventsourcing's recorders grow by capability, a backend may offer more, each a protocol here
that callers test for with ``isinstance`` rather than asking which backend it is:

- :class:`ObservableStore`: counters and per-commit reports (every backend);
- :class:`DurabilityReporting`: says what "durable" rests on (every backend);
- :class:`FencedAppends`: shared by replicas; an append made under a :class:`Fence` is refused
  (``StaleFence``) when its lease is gone (PostgreSQL). SQLite is one process on one file: it
  has no leases, so it ignores fences;
- :class:`Checkpointing`: a write-ahead log checkpointed aside (SQLite).

The one fold both SQL backends run inside their transactions is
:func:`service.store.fold.fold_batch`, on the domain's :class:`reconcilers.events.Fold`; the
backend is chosen by URL scheme in one place, :func:`service.store.open_store`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import structlog

from reconcilers.events import Event, Store
from service.store.errors import StaleFence, StoreClosed, StoreError
from service.store.fold import RowKey, fold_batch, numbered, touched_keys

__all__ = [
    "BatchObserver",
    "BatchReport",
    "Checkpointing",
    "DurabilityReporting",
    "FencedAppends",
    "ObservableStore",
    "RowKey",
    "StaleFence",
    "StoreClosed",
    "StoreError",
    "StoreStats",
    "fold_batch",
    "log",
    "numbered",
    "touched_keys",
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


@runtime_checkable
class DurabilityReporting(Protocol):
    """Says what an acknowledged append rests on, for tests and ``/readyz``."""

    async def durability(self) -> str:
        """E.g. ``"synchronous=FULL"`` (SQLite) or ``"synchronous_commit=on"`` (PostgreSQL)."""
        ...


@runtime_checkable
class WriteHealth(Protocol):
    """Whether appends are getting through now: what ``/readyz`` reports (issue 20: a reader's
    ``SELECT 1`` answered "ready" through 30 s of disk-full and a frozen file system)."""

    def write_problem(self) -> str | None:
        """``None`` while commits succeed; otherwise what is wrong, in words."""
        ...


@runtime_checkable
class FencedAppends(Protocol):
    """A store shared by replicas: appends with a ``fence`` are checked against its leases in
    their own transaction, and refused with :class:`StaleFence`, writing nothing, when stale."""

    fences_appends: bool


@runtime_checkable
class Checkpointing(Protocol):
    """A write-ahead log copied back into the database aside from the writes (SQLite)."""

    async def checkpoint(self) -> tuple[int, int]: ...
