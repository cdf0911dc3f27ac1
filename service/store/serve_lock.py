"""One ``recctl serve`` per SQLite file: an exclusive lock on ``<db>.lock`` for the process's life.

Two services on one SQLite file reconcile the same rooms twice, each with its own rate limiter
(issue 20: 48 duplicate queries, 7 of 8 reservations answered 53, twice the provider's limit
together). Replicas are for PostgreSQL, whose leases keep them apart. ``flock`` is released by
the kernel when the process dies, ``kill -9`` included, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from typing import IO


class AlreadyServing(Exception):
    """Another process holds the lock: it serves this database now."""


def hold_serve_lock(db_path: str) -> IO[str]:
    """Take the lock beside ``db_path`` without waiting; keep the returned file open (closing
    it releases the lock). Raises :class:`AlreadyServing` when another process has it."""
    lock_path = f"{db_path}.lock"
    handle = open(lock_path, "a+", encoding="ascii")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise AlreadyServing(
            f"{db_path} is already served by pid {holder} (lock {lock_path}): one recctl serve "
            "per SQLite file; run replicas on PostgreSQL (DATABASE_URL=postgresql://...)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
