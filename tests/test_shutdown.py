"""SIGTERM drains the real ``recctl serve`` under load: it stops taking work (``/readyz`` and new
webhooks 503), lets the reconcile passes in flight finish, and exits 0 within
``SHUTDOWN_TIMEOUT_SECONDS``; every webhook it answered 2xx is in the log afterwards.

The Agora emulator answers every call after 1.5 s (``--latency``), so passes are in flight when
the signal comes: the test waits for an intent whose result is not yet in the log, then signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import encode, notification, signed
from tests.procs import Server, clean_env, recctl
from tests.test_service_e2e import NCS, SPEC, Stack, stack, until

pytestmark = pytest.mark.slow

ROOMS = 12
WEBHOOKS = 600
CONCURRENCY = 32
SHUTDOWN_TIMEOUT = 10.0


def open_intents(db: Path) -> set[str]:
    """Intents whose result is not in the log yet: provider calls under way."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT type, dedup_key FROM events WHERE source = 'reconciler'")
        keys = {(t, k) for t, k in rows.fetchall()}
    return {
        k
        for t, k in keys
        if t.startswith("intent.") and ("result." + t.split(".", 1)[1], k + "|result") not in keys
    }


def webhook(i: int) -> bytes:
    # A recorder's own progress report (its uid is in the recorder range): stored, wakes nothing.
    return encode(notification(f"drain-{i}", sid=f"sid-{i % 5}", sequence=i))


async def test_sigterm_drains_under_load_and_exits_zero(tmp_path: Path) -> None:
    async with stack(
        tmp_path, "--latency", "1.5", SHUTDOWN_TIMEOUT_SECONDS=str(SHUTDOWN_TIMEOUT)
    ) as s:
        async with s.api() as api:
            for i in range(ROOMS):
                put = await api.put(f"/v1/rooms/drain-{i}/recording", json=SPEC)
                assert put.status_code in (200, 201), put.text
        acked: dict[str, int] = {}
        refused: list[int] = []
        signalled = asyncio.Event()
        limits = httpx.Limits(max_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=s.service.url, limits=limits, timeout=30) as client:
            gate = asyncio.Semaphore(CONCURRENCY)

            async def send(i: int) -> None:
                body = webhook(i)
                async with gate:
                    try:
                        response = await client.post(
                            "/webhooks/agora", content=body, headers=signed(body, NCS)
                        )
                    except httpx.TransportError:
                        return  # the server has closed: not acknowledged
                if response.status_code == 200:
                    acked[f"drain-{i}"] = response.json()["seq"]
                else:
                    refused.append(response.status_code)

            async def terminate() -> None:
                async def loaded() -> bool:
                    return len(acked) >= 100 and bool(open_intents(s.db))

                await until(loaded, 60, "webhooks acknowledged and a provider call in flight")
                s.service.process.send_signal(signal.SIGTERM)
                signalled.set()

            killer = asyncio.create_task(terminate())
            await asyncio.gather(*(send(i) for i in range(WEBHOOKS // 2)))
            await killer
            in_flight_at_signal = open_intents(s.db)
            await _draining_answers(s)
            await asyncio.gather(*(send(i) for i in range(WEBHOOKS // 2, WEBHOOKS)))

        started = time.monotonic()
        code = await asyncio.to_thread(_wait, s.service.process, SHUTDOWN_TIMEOUT + 15)
        log = s.service.log_path.read_text()
        assert code == 0, log[-3000:]
        assert time.monotonic() - started < SHUTDOWN_TIMEOUT + 5

    assert in_flight_at_signal, "no provider call was in flight when the signal came"
    assert not open_intents(s.db), "a pass in flight was abandoned: an intent has no result"
    assert set(refused) <= {503}, refused
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    drained = [line for line in lines if line.get("event") == "drained"]
    assert drained and drained[0]["complete"] is True, drained

    listed = recctl("events", "--json", env=s.env)
    assert listed.returncode == 0, listed.stderr
    found = {e["dedup_key"]: e["seq"] for e in map(json.loads, listed.stdout.splitlines())}
    missing = {k: seq for k, seq in acked.items() if found.get(k) != seq}
    assert len(acked) >= 100
    assert not missing, f"{len(missing)} acknowledged webhooks are not in the log: {missing}"


async def _draining_answers(s: Stack) -> None:
    """While the passes finish: unready, and new work refused with 503 (and Retry-After)."""
    async with httpx.AsyncClient(base_url=s.service.url, timeout=10) as client:

        async def unready() -> bool:
            response = await client.get("/readyz")
            return response.status_code == 503

        await until(unready, 10, "/readyz unready after SIGTERM")
        ready = await client.get("/readyz")
        assert ready.json()["error"]["code"] == "draining"
        body = webhook(10**6)
        refused = await client.post("/webhooks/agora", content=body, headers=signed(body, NCS))
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "draining"
        assert refused.headers["retry-after"] == "1"
        assert (await client.get("/healthz")).status_code == 200  # alive: no restart wanted
    async with s.api() as api:
        put = await api.put("/v1/rooms/too-late/recording", json=SPEC)
        assert put.status_code == 503, put.text
        assert (await api.get("/v1/rooms")).status_code == 200  # reads are still served


def _wait(process: subprocess.Popen[bytes], timeout: float) -> int:
    return process.wait(timeout=timeout)


async def test_sigterm_of_a_replica_gives_its_leases_back(postgres_db: str, tmp_path: Path) -> None:
    """Two replicas on PostgreSQL: the one told to stop drains under webhook load, exits 0, and
    leaves no lease of its own behind (released, not left to expire after LEASE_SECONDS); the
    other holds every shard then."""
    import asyncpg

    env = clean_env(
        DATABASE_URL=postgres_db,
        AGORA_NCS_SECRET=NCS,
        AGORA_API_BASE_URL="http://127.0.0.1:9",  # no room is declared: no provider call
        LEASE_SECONDS="15",
        SHUTDOWN_TIMEOUT_SECONDS=str(SHUTDOWN_TIMEOUT),
        LOG_LEVEL="INFO",
    )
    leaving = Server.recctl_serve(env, tmp_path / "leaving.log")
    staying = Server.recctl_serve(env, tmp_path / "staying.log")
    try:
        await leaving.wait_healthy(path="/readyz")
        await staying.wait_healthy(path="/readyz")

        async def replica(server: Server) -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                body: dict[str, Any] = (await client.get("/readyz")).json()
                return body.get("replica", {})

        async def both_hold_shards() -> bool:
            views = [await replica(leaving), await replica(staying)]
            return all(v.get("owned_shards") for v in views)

        await until(both_hold_shards, 60, "the shards shared by the two replicas")
        me = (await replica(leaving))["id"]
        shards = (await replica(leaving))["shards"]

        acked: dict[str, int] = {}
        async with httpx.AsyncClient(base_url=leaving.url, timeout=30) as client:

            async def send(i: int) -> None:
                body = webhook(i)
                try:
                    answer = await client.post(
                        "/webhooks/agora", content=body, headers=signed(body, NCS)
                    )
                except httpx.TransportError:
                    return
                if answer.status_code == 200:
                    acked[f"drain-{i}"] = answer.json()["seq"]
                else:
                    assert answer.status_code == 503, answer.text

            first = [asyncio.create_task(send(i)) for i in range(100)]
            await asyncio.gather(*first[:50])
            leaving.process.send_signal(signal.SIGTERM)
            await asyncio.gather(*first[50:], *(send(i) for i in range(100, 200)))
        code = await asyncio.to_thread(_wait, leaving.process, SHUTDOWN_TIMEOUT + 15)
        assert code == 0, leaving.log()

        connection = await asyncpg.connect(postgres_db)
        try:
            still_mine = await connection.fetchval(
                "SELECT count(*) FROM leases WHERE owner = $1 AND expires_at > now()", me
            )
        finally:
            await connection.close()
        assert still_mine == 0, "leases left to expire instead of given back"

        async def staying_holds_all() -> bool:
            return len((await replica(staying)).get("owned_shards", [])) == shards

        await until(staying_holds_all, 30, "the other replica holding every shard")
        assert len(acked) >= 50
        listed = recctl("events", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        found = {e["dedup_key"]: e["seq"] for e in map(json.loads, listed.stdout.splitlines())}
        assert {k: found.get(k) for k in acked} == acked, "an acknowledged webhook is missing"
    finally:
        leaving.stop()
        staying.stop()
