"""The PostgreSQL connection pools a process opens, all sized by one :class:`PoolLimits`.

A replica opens two: the store's (appends, reads, replays: ``min_size`` .. ``max_size``) and
the replica's own (the lease loop, the shared pacers, NOTIFY: up to ``replica_max_size``), plus
one connection of its own for LISTEN. So a replica holds up to
``max_size + replica_max_size + 1`` connections, and that times the replicas must stay under
the server's ``max_connections`` (docs/postgresql.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from service.store.postgres.sql import postgres_dsn

__all__ = ["PoolLimits", "open_pool"]


@dataclass(frozen=True)
class PoolLimits:
    """The pools' bounds and timeouts (``DATABASE_POOL_MIN``/``_MAX``,
    ``DATABASE_REPLICA_POOL_MAX``, ``DATABASE_COMMAND_TIMEOUT_SECONDS``)."""

    min_size: int = 1
    max_size: int = 10
    command_timeout: float = 30.0
    connect_timeout: float = 10.0
    replica_max_size: int = 4

    @classmethod
    def from_env(cls) -> PoolLimits:
        """For tools and tests that open a store without the service's Settings."""
        env = os.environ
        return cls(
            min_size=int(env.get("DATABASE_POOL_MIN", cls.min_size)),
            max_size=int(env.get("DATABASE_POOL_MAX", cls.max_size)),
            command_timeout=float(env.get("DATABASE_COMMAND_TIMEOUT_SECONDS", cls.command_timeout)),
            replica_max_size=int(env.get("DATABASE_REPLICA_POOL_MAX", cls.replica_max_size)),
        )

    def replica(self) -> PoolLimits:
        """The limits of the replica's own pool: one connection kept, the same timeouts."""
        return replace(self, min_size=1, max_size=self.replica_max_size)


async def open_pool(dsn: str, limits: PoolLimits, **options: Any) -> asyncpg.Pool:
    """A pool on ``dsn`` within ``limits``; ``options`` go to ``asyncpg.create_pool`` as they
    are (``server_settings``, ``reset``, ...). Raises what asyncpg raises."""
    return await asyncpg.create_pool(
        postgres_dsn(dsn),
        min_size=min(limits.min_size, limits.max_size),
        max_size=limits.max_size,
        command_timeout=limits.command_timeout,
        timeout=limits.connect_timeout,
        **options,
    )
