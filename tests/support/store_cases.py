"""What the store tests share: small projections with sharp semantics, event builders, and the
places a backend's store lives (a SQLite file, a PostgreSQL database) so that tests can open,
close and reopen one the same way on every backend."""

from __future__ import annotations

import contextlib
import itertools
import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcilers.events import Event, NewEvent, Projection, Row, Store
from service.store import ObservableStore, open_store
from tests.support.pg_server import PostgresServer, admin

BACKENDS = ("postgresql", "sqlite", "sqlite-process")


class RoomTally:
    """Order-sensitive on purpose: counts a room's events, keeps its last three types."""

    name = "tally"

    def keys(self, event: Event) -> Sequence[str]:
        return [event.room] if event.room else []

    def apply(self, row: Row | None, event: Event) -> Row | None:
        if event.type == "reset":
            return None
        data = dict(row.data) if row else {"count": 0, "recent": []}
        data["count"] += 1
        data["recent"] = [*data["recent"], event.type][-3:]
        return Row(self.name, event.room or "", event.payload.get("group"), data, event.seq)


class SessionTypes:
    """Several keys per event (per session and type, and per session). ``apply`` is not told
    the key, so a new row's key is left empty: the store files rows under ``keys()``'s key."""

    name = "session_types"

    def keys(self, event: Event) -> Sequence[str]:
        return [f"{event.session}:{event.type}", f"{event.session}:*"] if event.session else []

    def apply(self, row: Row | None, event: Event) -> Row | None:
        data = (
            {"n": row.data["n"] + 1, "first": row.data["first"]}
            if row
            else {"n": 1, "first": event.seq}
        )
        return Row(self.name, row.key if row else "", event.room, data, event.seq)


PROJECTIONS: tuple[Projection, ...] = (RoomTally(), SessionTypes())


def new(key: str, type_: str = "a", room: str | None = "r1", **kw: Any) -> NewEvent:
    payload = kw.pop("payload", {"group": "g1", "key": key})
    return NewEvent("api", key, type_, payload, room=room, **kw)


async def all_rows(store: Store, projections: Sequence[Projection]) -> dict[tuple[str, str], Row]:
    found: dict[tuple[str, str], Row] = {}
    for projection in projections:
        after = ""
        while page := await store.rows(projection.name, after_key=after, limit=7):
            found.update({(r.projection, r.key): r for r in page})
            after = page[-1].key
    return found


def as_stored(rows: dict[tuple[str, str], Row]) -> dict[tuple[str, str], Row]:
    """What a row looks like after a trip through the store: canonical key, JSON data."""
    return {
        k: Row(k[0], k[1], r.room, json.loads(json.dumps(r.data)), r.seq) for k, r in rows.items()
    }


@dataclass(frozen=True)
class Place:
    """Where one test's store lives: opened, closed and reopened at the same place."""

    backend: str
    url: str

    async def open(self, projections: Sequence[Projection] = ()) -> ObservableStore:
        process = self.backend == "sqlite-process"
        return await open_store(self.url, projections, writer_process=process)


def sqlite_place(backend: str, directory: Path) -> Place:
    return Place(backend, f"sqlite:///{directory / 'events.db'}")


_databases = itertools.count(1)


@contextlib.contextmanager
def fresh_place(backend: str, server: PostgresServer | None) -> Iterator[Place]:
    """A new, empty place for one example of a property test (a temp dir, or a database)."""
    if backend == "postgresql":
        assert server is not None
        name = f"example_{next(_databases)}"
        admin(server.dsn(), f"CREATE DATABASE {name} TEMPLATE template0")
        try:
            yield Place(backend, server.dsn(name))
        finally:
            admin(server.dsn(), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return
    with tempfile.TemporaryDirectory() as directory:
        yield sqlite_place(backend, Path(directory))
