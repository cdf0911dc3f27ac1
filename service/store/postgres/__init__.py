"""The PostgreSQL backend: one log shared by any number of replicas (see docs/postgresql.md).

Imported on first use by :func:`service.store.open_store`; the SQLite path never loads asyncpg.
"""

from service.store.postgres.pool import PoolLimits, open_pool
from service.store.postgres.sql import postgres_dsn
from service.store.postgres.store import PostgresStore

__all__ = ["PoolLimits", "PostgresStore", "open_pool", "postgres_dsn"]
