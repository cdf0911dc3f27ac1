"""The PostgreSQL store's schema: forward-only migrations, applied under an advisory lock.

Text that is compared or ordered (dedup keys, projection keys, rooms) is ``COLLATE "C"``: byte
order, as SQLite has it, whatever the database's locale, so that paging by key gives the same
pages on both backends. Payloads are ``json`` (the text kept as it arrived, a webhook's body as
received); projection rows too (written and read whole, never queried inside).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.store.migrations import Migration, pending

if TYPE_CHECKING:
    from service.store.postgres.sql import Conn

__all__ = ["MIGRATIONS", "MIGRATION_LOCK", "applied_versions", "migrate"]

MIGRATION_LOCK = 0x7265_6363_746C_0001
"""The advisory lock key migrations hold (several replicas may start at once): "recctl" + 1."""

INITIAL = """
CREATE TABLE events (
    seq         bigint PRIMARY KEY,
    source      text COLLATE "C" NOT NULL,
    dedup_key   text COLLATE "C" NOT NULL,
    room        text COLLATE "C",
    session     text COLLATE "C",
    type        text NOT NULL,
    payload     json NOT NULL,
    received_at timestamptz NOT NULL,
    occurred_at timestamptz,
    UNIQUE (source, dedup_key)
);
CREATE INDEX events_room ON events (room, seq);
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only';
END
$$;
CREATE TRIGGER events_no_change BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
CREATE TABLE projections (
    projection text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    room       text COLLATE "C",
    data       json NOT NULL,
    seq        bigint NOT NULL,
    PRIMARY KEY (projection, key)
);
CREATE INDEX projections_room ON projections (projection, room, key);
CREATE TABLE leases (
    shard      integer PRIMARY KEY,
    owner      text,
    token      bigint NOT NULL DEFAULT 0,
    expires_at timestamptz
);
CREATE TABLE replicas (
    id           text PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    info         jsonb NOT NULL DEFAULT '{}'
);
"""

RATE_SHARES = """
DROP TABLE IF EXISTS rate_budget;
CREATE TABLE rate_shares (
    account    text COLLATE "C" NOT NULL,
    replica    text COLLATE "C" NOT NULL,
    rate       float8 NOT NULL,
    demand     float8 NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (account, replica)
);
"""
"""Each replica's leased share of a provider account's rate limit (:mod:`service.replicas.pacer`).
``rate_budget`` was the per-call reservation it replaced, created by the pacer itself."""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events, projections, leases, replicas", INITIAL),
    Migration(2, "rate shares", RATE_SHARES),
)

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def applied_versions(conn: Conn) -> list[int]:
    """The versions applied so far (none on an empty database)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return []
    return [r[0] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY version")]


async def migrate(conn: Conn) -> list[int]:
    """Apply the missing migrations in one transaction under :data:`MIGRATION_LOCK`; return the
    versions applied (``[]``: up to date). A replica starting beside another waits for the lock,
    then finds the work done. Raises ``SchemaTooNew`` on a database ahead of this build."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(VERSION_TABLE)
        todo = pending(MIGRATIONS, await applied_versions(conn))
        for migration in todo:
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
    return [m.version for m in todo]
