"""Nothing acknowledged is lost: ``kill -9`` the server right after an acknowledgement, restart it,
and find every acknowledged event in the log, at the seq it was acknowledged with. On both
backends: a SQLite file, and the PostgreSQL server the session starts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.helpers import SECRET, encode, notification, signed
from tests.procs import Server, clean_env, recctl

N = 300
CONCURRENCY = 64


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "kill_after"),
    [("sqlite", N), ("sqlite", N * 3 // 4), ("postgresql", N * 3 // 4)],
    ids=["sqlite-after-last-ack", "sqlite-mid-flight", "postgresql-mid-flight"],
)
async def test_acknowledged_events_survive_kill_9(
    tmp_path: Path, kill_after: int, backend: str, request: pytest.FixtureRequest
) -> None:
    url = (
        request.getfixturevalue("postgres_db")
        if backend == "postgresql"
        else f"sqlite:///{tmp_path}/events.db"
    )
    env = clean_env(DATABASE_URL=url, AGORA_NCS_SECRET=SECRET, LOG_LEVEL="WARNING")
    server = Server.recctl_serve(env, tmp_path / "server.log")
    try:
        await server.wait_healthy()
        acked = await send_until_killed(server, kill_after)
    finally:
        server.kill9()
    assert len(acked) >= kill_after

    restarted = Server.recctl_serve(env, tmp_path / "server.log")
    try:
        await restarted.wait_healthy()
        listed = recctl("events", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        found = {e["dedup_key"]: e["seq"] for e in map(json.loads, listed.stdout.splitlines())}
        missing = {k: seq for k, seq in acked.items() if found.get(k) != seq}
        assert not missing, f"{len(missing)} acknowledged events lost or moved: {missing}"
        async with httpx.AsyncClient(base_url=restarted.url) as client:
            notice, seq = next(iter(acked.items()))
            body = encode(notification(notice))
            again = await client.post("/webhooks/agora", content=body, headers=signed(body))
            assert again.json() == {"ok": True, "seq": seq, "duplicate": True}
    finally:
        restarted.stop()


async def send_until_killed(server: Server, kill_after: int) -> dict[str, int]:
    """POST N signed notifications, CONCURRENCY at a time; SIGKILL at the kill_after-th 200.

    Returns every notice id answered 200 (seq included), before or after the kill.
    """
    acked: dict[str, int] = {}
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY)

    async def one(client: httpx.AsyncClient, i: int) -> None:
        notice = f"durable-{i}"
        body = encode(notification(notice, sid=f"sid-{i % 7}", sequence=i))
        async with gate:
            try:
                response = await client.post("/webhooks/agora", content=body, headers=signed(body))
            except httpx.TransportError:
                return  # in flight when the server died: not acknowledged, may or may not be kept
        if response.status_code == 200:
            acked[notice] = response.json()["seq"]
            if len(acked) == kill_after:
                server.kill9()

    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
        await asyncio.gather(*(one(client, i) for i in range(N)))
    return acked
