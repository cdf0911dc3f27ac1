"""The SQLite store's schema versions: forward-only migrations, applied by the writer at open.

Version 1 is the schema the store had before it was versioned, in ``CREATE ... IF NOT EXISTS``
form, so that a file made before versioning adopts it unchanged. SQLite serialises writers
(``BEGIN IMMEDIATE``): two processes opening one file migrate it once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime

from service.store.migrations import Migration, pending
from service.store.sqlite.schema import RETENTION_SCHEMA, SCHEMA

__all__ = ["MIGRATIONS", "applied_versions", "migrate_sqlite"]

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events and projections", SCHEMA),
    Migration(2, "retention: a snapshot of the projections, guarded deletes", RETENTION_SCHEMA),
)

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


def statements(script: str) -> Iterator[str]:
    """The statements of ``script`` one by one (a trigger's body holds semicolons of its own)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


def applied_versions(conn: sqlite3.Connection) -> list[int]:
    found = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchall()
    if not found:
        return []
    return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


def migrate_sqlite(conn: sqlite3.Connection) -> list[int]:
    """Apply the missing migrations in one transaction; return the versions applied. ``conn``
    is in autocommit mode (``isolation_level=None``). Raises ``SchemaTooNew``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(VERSION_TABLE)
        todo = pending(MIGRATIONS, applied_versions(conn))
        for migration in todo:
            for statement in statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, datetime.now(UTC).isoformat()),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return [m.version for m in todo]
