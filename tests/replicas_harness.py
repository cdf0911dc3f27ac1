"""Several ``recctl serve`` replicas on one PostgreSQL database and the Agora emulator, all real
processes on loopback, for the high-availability tests, the chaos runs and the benchmarks.

Every replica takes API calls; the emulator sends its callbacks to one of them (``ingress``),
so a room owned by another replica is woken through PostgreSQL's NOTIFY. A replica keeps its
port across a restart. ``pause``/``resume`` are SIGSTOP/SIGCONT: a process that stops without
knowing it (a GC pause, a slow disk), the case leases alone cannot fence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from reconcilers.identity import UidRange
from service.replicas.shards import shard_of
from tests.procs import Server, clean_env, free_port

TOKEN = "ha-api-token-for-the-tests"
NCS = "ha-ncs-secret"
TENANT = "acme"
UIDS = UidRange()
SPEC = {"state": "recording", "mode": "mix", "options": {"recordingConfig": {"maxIdleTime": 30}}}
STORAGE = {
    "default": {
        "kind": "s3",
        "bucket": "ha",
        "access_key_id": "AKIAHATEST",
        "secret_access_key": "ha-storage-secret",
    }
}


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Poll ``check`` until true; the seconds it took. Raises when ``within`` passes first."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.05)  # polling interval, not a synchronisation
    return time.monotonic() - started


@dataclass
class Cluster:
    tmp: Path
    dsn: str
    env: dict[str, str]
    emulator: Server
    ports: list[int]
    ingress: int
    replicas: list[Server | None] = field(default_factory=list)
    paused: set[int] = field(default_factory=set)

    # -- processes ---------------------------------------------------------------------------

    def start(self, i: int) -> Server:
        port = self.ports[i]
        server = Server.start(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
            port,
            self.env,
            self.tmp / f"replica-{i}.log",
        )
        self.replicas[i] = server
        return server

    async def restart(self, i: int) -> None:
        server = self.start(i)
        await server.wait_healthy()

    def kill9(self, i: int) -> None:
        server = self.replicas[i]
        assert server is not None
        if i in self.paused:
            self.resume(i)
        server.kill9()
        self.replicas[i] = None

    def pause(self, i: int) -> None:
        server = self.replicas[i]
        assert server is not None
        server.process.send_signal(signal.SIGSTOP)
        self.paused.add(i)

    def resume(self, i: int) -> None:
        server = self.replicas[i]
        assert server is not None
        server.process.send_signal(signal.SIGCONT)
        self.paused.discard(i)

    def running(self) -> list[int]:
        return [i for i, r in enumerate(self.replicas) if r is not None and i not in self.paused]

    def stop_all(self) -> None:
        for i in list(self.paused):
            self.resume(i)
        for server in self.replicas:
            if server is not None:
                server.stop()
        self.emulator.stop()

    # -- clients -----------------------------------------------------------------------------

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def api(self, i: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url(i), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    def emu(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.emulator.url, timeout=10)

    async def readyz(self, i: int) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(f"{self.url(i)}/readyz")
            found: dict[str, Any] = answer.json()
            return found

    async def metric(self, i: int, name: str, **labels: str) -> float:
        """A sample of replica ``i``'s ``/metrics`` (0 when absent)."""
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"{self.url(i)}/metrics")).text
        want = {f'{k}="{v}"' for k, v in labels.items()}
        total = 0.0
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            metric, _, label_text = series.partition("{")
            if line.startswith("#") or metric != name:
                continue
            if want <= set(label_text.rstrip("}").split(",")):  # the labels asked for, any others
                total += float(value)
        return total

    async def owners(self) -> dict[int, int]:
        """Shard -> the index of the running replica that holds it (by their ``/readyz``)."""
        found: dict[int, int] = {}
        for i in self.running():
            for shard in (await self.readyz(i))["replica"]["owned_shards"]:
                found[shard] = i
        return found

    async def owner_of(self, room: str) -> int | None:
        return (await self.owners()).get(shard_of(f"{TENANT}/{room}"))

    async def all_shards_held(self, count: int | None = None) -> bool:
        """Every shard held by a running replica (by ``count`` of them, when given)."""
        with contextlib.suppress(httpx.HTTPError):
            owners = await self.owners()
            if len(owners) == 64 and (count is None or len(set(owners.values())) == count):
                return True
        return False

    # -- the world ---------------------------------------------------------------------------

    async def declare(self, rooms: list[str], state: str = "recording") -> None:
        """PUT each room's wish, spread over the running replicas' APIs."""
        running = self.running()
        clients = {i: self.api(i) for i in running}
        try:
            for n, room in enumerate(rooms):
                api = clients[running[n % len(running)]]
                answer = await api.put(f"/v1/rooms/{room}/recording", json={**SPEC, "state": state})
                assert answer.status_code in (200, 201), answer.text
        finally:
            for client in clients.values():
                await client.aclose()

    async def join_all(self, rooms: list[str]) -> None:
        async with self.emu() as emu:
            for n, room in enumerate(rooms):
                answer = await emu.post(f"/_emulator/channels/{room}/users", json={"uid": 100 + n})
                assert answer.status_code == 201, answer.text

    async def tasks(self, live: bool = False) -> list[dict[str, Any]]:
        async with self.emu() as emu:
            params = {"live": "true"} if live else {}
            found: list[dict[str, Any]] = (await emu.get("/_emulator/tasks", params=params)).json()
        return [t for t in found if UIDS.contains(t["uid"])]

    async def recording(self, rooms: list[str]) -> set[str]:
        """The rooms among ``rooms`` with exactly one running task of ours."""
        live = await self.tasks(live=True)
        by_room: dict[str, list[dict[str, Any]]] = {}
        for t in live:
            by_room.setdefault(t["cname"], []).append(t)
        return {
            r for r in rooms
            if len(by_room.get(r, [])) == 1 and by_room[r][0]["phase"] == "running"
        }

    async def stats(self) -> dict[str, Any]:
        async with self.emu() as emu:
            found: dict[str, Any] = (await emu.get("/_emulator/stats")).json()
            return found


def double_sessions(tasks: list[dict[str, Any]]) -> list[str]:
    """Rooms where two tasks of ours with the same recorder uid ever ran at once."""
    now = time.time() + 10**6
    found: list[str] = []
    by_room: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        by_room.setdefault(t["cname"], []).append(t)
    for room, group in by_room.items():
        group.sort(key=lambda t: t["started_at"])
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if b["started_at"] < (a["ended_at"] or now) and a["uid"] == b["uid"]:
                    found.append(f"{room} uid {a['uid']}: {a['sid']}+{b['sid']}")
    return found


@contextlib.asynccontextmanager
async def cluster(
    tmp: Path,
    dsn: str,
    replicas: int = 3,
    *,
    ingress: int = -1,
    emulator_flags: tuple[str, ...] = (),
    **env: str,
) -> AsyncIterator[Cluster]:
    """Start the emulator and ``replicas`` replicas; yield once all are healthy and every
    shard has an owner."""
    ports = [free_port() for _ in range(replicas)]
    ingress = ingress % replicas
    emulator_port = free_port()
    defaults = {
        "LEASE_SECONDS": "3",
        "QUERY_INTERVAL_SECONDS": "2",
        "FAILOVER_WINDOW_SECONDS": "3",
        "RESYNC_INTERVAL_SECONDS": "5",
    }
    settings = clean_env(
        DATABASE_URL=dsn,
        AGORA_NCS_SECRET=NCS,
        AGORA_APP_ID="emulator-app",
        AGORA_CUSTOMER_KEY="emulator-key",
        AGORA_CUSTOMER_SECRET="emulator-secret",
        AGORA_API_BASE_URL=f"http://127.0.0.1:{emulator_port}",
        API_TOKENS=f"{TOKEN}:{TENANT}",
        STORAGE_PROFILES=json.dumps(STORAGE),
        **{**defaults, **env},
    )
    emulator = Server.start(
        [sys.executable, "-m", "service.cli", "emulate", "agora", "--port", str(emulator_port),
         "--ncs-secret", NCS, "--seed", "11",
         "--callback-url", f"http://127.0.0.1:{ports[ingress]}/webhooks/agora",
         "--callback-retry-delays", "0,1,2", "--startup-seconds", "0.5",
         "--max-concurrent-tasks", "1000", *emulator_flags],
        emulator_port, clean_env(), tmp / "emulator.log",
    )
    c = Cluster(tmp, dsn, settings, emulator, ports, ingress, [None] * replicas)
    try:
        await emulator.wait_healthy(path="/_emulator/health")
        for i in range(replicas):
            c.start(i)
        for server in c.replicas:
            assert server is not None
            await server.wait_healthy(within=60)
        await until(lambda: c.all_shards_held(replicas), 30, "every shard held, by every replica")
        yield c
    finally:
        c.stop_all()
