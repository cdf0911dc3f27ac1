"""Every PostgreSQL pool the service opens, the store's and the replica's, has the bounds and
the statement timeout of the settings' :class:`PoolLimits` (one place: ``runtime.pool_limits``)."""

from __future__ import annotations

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from service.config import Settings
from service.runtime import pool_limits, replicas_of
from service.store import PoolLimits, PostgresStore, open_store
from tests.support.store_cases import PROJECTIONS


def _settings(dsn: str) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": dsn,
            "DATABASE_POOL_MIN": "2",
            "DATABASE_POOL_MAX": "3",
            "DATABASE_REPLICA_POOL_MAX": "2",
            "DATABASE_COMMAND_TIMEOUT_SECONDS": "0.5",
        }
    )


def test_the_settings_give_the_limits_of_both_pools() -> None:
    limits = pool_limits(_settings("postgresql://db/rec"))
    assert limits == PoolLimits(min_size=2, max_size=3, command_timeout=0.5, replica_max_size=2)
    assert limits.replica() == PoolLimits(
        min_size=1, max_size=2, command_timeout=0.5, replica_max_size=2
    )


async def _times_out(pool: asyncpg.Pool) -> None:
    with pytest.raises(TimeoutError):
        await pool.execute("SELECT pg_sleep(5)")


async def test_the_store_and_the_replica_pools_take_the_settings_limits(postgres_db: str) -> None:
    settings = _settings(postgres_db)
    store = await open_store(postgres_db, PROJECTIONS, pool=pool_limits(settings))
    try:
        assert isinstance(store, PostgresStore)
        pool = store.pool
        assert (pool.get_min_size(), pool.get_max_size()) == (2, 3)
        await _times_out(pool)
        async with replicas_of(settings, CollectorRegistry()) as replicas:
            own = replicas.replica.pool
            assert (own.get_min_size(), own.get_max_size()) == (1, 2)
            await _times_out(own)
    finally:
        await store.close()
