"""Schema versions, shared by the backends: a numbered list of forward-only migrations.

Each backend keeps its list (``sqlite.migrations``, ``postgres.schema``) and a table
``schema_version`` of the versions applied. Opening a store applies what is missing, and so does
``recctl migrate``; a database newer than this build (a version it does not know) is refused
rather than written with an older idea of its schema. A migration is never edited once it has
shipped: a change is a new migration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.store.errors import StoreError

__all__ = ["Migration", "SchemaTooNew", "pending"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


class SchemaTooNew(StoreError):
    """The database was migrated by a newer build: this one must not write to it."""


def pending(migrations: Sequence[Migration], applied: Sequence[int]) -> list[Migration]:
    """The migrations still to apply, in order; raise if the database is ahead of this build."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, ... without gaps: {versions}")
    done = set(applied)
    if unknown := sorted(done - set(versions)):
        raise SchemaTooNew(
            f"the database has schema version {unknown[-1]}, newer than this build knows "
            f"({versions[-1] if versions else 0}): upgrade recctl before using it"
        )
    return [m for m in migrations if m.version not in done]
