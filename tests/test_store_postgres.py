"""What only the PostgreSQL backend has: its migrations under an advisory lock, the lease tables
(the replicas' part builds on them), the server the tests start. The store contract itself is in
``test_store_contract.py``, run against both backends."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service.store.migrations import SchemaTooNew
from service.store.postgres.schema import MIGRATIONS, applied_versions, migrate
from tests.support.pg_server import NoPostgres, find_bindir


async def test_the_server_is_real_and_durable(postgres_db: str) -> None:
    conn = await asyncpg.connect(postgres_db)
    try:
        assert await conn.fetchval("SHOW fsync") == "on"
        assert int(await conn.fetchval("SHOW server_version_num")) >= 120000
    finally:
        await conn.close()


def test_no_server_is_a_failure_that_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("PG_BINDIR", str(tmp_path))
    with pytest.raises(NoPostgres, match="apt-get install postgresql"):
        find_bindir()


async def test_replicas_starting_at_once_migrate_once(postgres_db: str) -> None:
    conns = [await asyncpg.connect(postgres_db) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(applied, key=len) == [[], [], [], [m.version for m in MIGRATIONS]]
        assert await applied_versions(conns[0]) == [m.version for m in MIGRATIONS]
        assert await migrate(conns[0]) == []  # a rerun is a no-op
    finally:
        for conn in conns:
            await conn.close()


async def test_the_lease_tables_are_as_the_replicas_expect(postgres_db: str) -> None:
    conn = await asyncpg.connect(postgres_db)
    try:
        await migrate(conn)
        await conn.execute("INSERT INTO leases (shard) VALUES (3)")
        row = await conn.fetchrow("SELECT * FROM leases")
        assert row is not None
        assert dict(row) == {"shard": 3, "owner": None, "token": 0, "expires_at": None}
        await conn.execute(
            "INSERT INTO replicas (id, started_at, heartbeat_at) VALUES ('r1', now(), now())"
        )
        assert await conn.fetchval("SELECT info FROM replicas") == "{}"
    finally:
        await conn.close()


async def test_the_log_is_append_only(postgres_db: str) -> None:
    conn = await asyncpg.connect(postgres_db)
    try:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO events (seq, source, dedup_key, type, payload, received_at)"
            " VALUES (1, 'api', 'k', 't', '{}', now())"
        )
        for statement in ("UPDATE events SET type = 'x'", "DELETE FROM events", "TRUNCATE events"):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_a_database_ahead_of_this_build_is_refused(postgres_db: str) -> None:
    conn = await asyncpg.connect(postgres_db)
    try:
        await migrate(conn)
        await conn.execute("INSERT INTO schema_version (version, name) VALUES (99, 'future')")
        with pytest.raises(SchemaTooNew, match="version 99"):
            await migrate(conn)
    finally:
        await conn.close()
