"""Chaos with several replicas on PostgreSQL (``make chaos BACKEND=postgres REPLICAS=3``).

The single-process run's workload, faults and invariants, with three changes: the service is
``replicas`` ``recctl serve`` processes on one PostgreSQL database; every API call goes to a
running replica picked at random; and each seeded disruption picks a replica at random and
either ``kill -9``-s it (restarted after a seeded outage) or pauses it with SIGSTOP past its
lease (SIGCONT after), the case only fencing makes safe. The log and the replay are checked
on the database. An orphan may also live one lease longer: the rooms of a dead or paused
replica wait that long for their new owner.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

from tests.chaos.harness import ChaosConfig, ChaosRun, RunReport
from tests.procs import Server, free_port, recctl
from tests.support.pg_server import admin

T = TypeVar("T")


@dataclass(frozen=True)
class ReplicaChaosConfig(ChaosConfig):
    replicas: int = 3
    lease_seconds: float = 3.0

    @property
    def orphan_bound(self) -> float:
        """The single process's bound, plus a lease: the takeover of a lost replica's rooms."""
        return 2 * self.query_interval + self.failover_window + self.lease_seconds + 1.0


class _AnyReplica(httpx.AsyncBaseTransport):
    """Sends each request to a running replica picked at random (never a paused one: its
    socket would accept and never answer)."""

    def __init__(self, run: ReplicaChaosRun) -> None:
        self.run = run
        self.rng = random.Random(run.cfg.seed * 7919)
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        running = self.run.running() or [0]
        port = self.run.ports[self.rng.choice(running)]
        request.url = request.url.copy_with(port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ReplicaChaosRun(ChaosRun):
    cfg: ReplicaChaosConfig

    def __init__(self, cfg: ReplicaChaosConfig, workdir: Path, dsn: str) -> None:
        super().__init__(cfg, workdir)
        self.dsn = dsn
        self.ports = [self.svc_port] + [free_port() for _ in range(cfg.replicas - 1)]
        self.replicas: list[Server | None] = [None] * cfg.replicas
        self.paused: set[int] = set()
        self.env["DATABASE_URL"] = dsn
        self.env["LEASE_SECONDS"] = str(cfg.lease_seconds)
        self.disruptions: list[str] = []

    # -- processes ---------------------------------------------------------------------------

    def _start_replica(self, i: int) -> Server:
        port = self.ports[i]
        command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)]
        server = Server.start(command, port, self.env, self.dir / f"replica-{i}.log")
        self.replicas[i] = server
        return server

    def _start_service(self) -> Server:
        """All replicas; the first (the emulator's callback target) stands for the service."""
        for i in range(1, self.cfg.replicas):
            self._start_replica(i)
        return self._start_replica(0)

    def running(self) -> list[int]:
        return [i for i, r in enumerate(self.replicas) if r is not None and i not in self.paused]

    async def _restart_service(self, down_for: float) -> None:
        """One seeded disruption of one seeded replica: kill -9 then restart after
        ``down_for``, or SIGSTOP for longer than a lease then SIGCONT."""
        i = self.rng.randrange(self.cfg.replicas)
        server = self.replicas[i]
        assert server is not None
        self.report.service_kills += 1
        if self.rng.random() < 0.5:
            self.disruptions.append(f"kill -9 replica {i}")
            server.kill9()
            self.replicas[i] = None
            await asyncio.sleep(down_for)  # the outage itself, not a synchronisation
            await self._start_replica(i).wait_healthy(within=60)
        else:
            pause = self.cfg.lease_seconds + down_for
            self.disruptions.append(f"SIGSTOP replica {i} for {pause:.1f}s")
            server.process.send_signal(19)  # SIGSTOP
            self.paused.add(i)
            await asyncio.sleep(pause)  # the pause itself, not a synchronisation
            server.process.send_signal(18)  # SIGCONT
            self.paused.discard(i)
        if i == 0:
            self.service = self.replicas[0]

    def _stop_all(self) -> None:
        for i in list(self.paused):
            server = self.replicas[i]
            if server is not None:
                server.process.send_signal(18)
        self.paused.clear()
        for server in self.replicas:
            if server is not None:
                server.stop()
        if self.emulator is not None:
            self.emulator.stop()

    def _api_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.svc_url, headers=self._api_headers(), timeout=10,
            transport=_AnyReplica(self),
        )

    # -- the checks, on PostgreSQL -----------------------------------------------------------

    def _log_rows(self) -> list[tuple[Any, ...]]:
        async def read() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(self.dsn)
            try:
                rows = await conn.fetch(
                    "SELECT source, dedup_key, room, type, payload, received_at "
                    "FROM events ORDER BY seq"
                )
            finally:
                await conn.close()
            return [
                (r[0], r[1], r[2], r[3], r[4] if isinstance(r[4], str) else json.dumps(r[4]),
                 r[5].isoformat())
                for r in rows
            ]

        return _in_a_thread(read)

    def _check_replay(self) -> None:
        """Replay a copy of the database (``recctl replay``) and compare every projection."""
        base, _, name = self.dsn.rpartition("/")
        copy = f"{name}_replay"
        admin(f"{base}/postgres", f"DROP DATABASE IF EXISTS {copy}",
              f"CREATE DATABASE {copy} TEMPLATE {name}")
        try:
            done = recctl("replay", env={**self.env, "DATABASE_URL": f"{base}/{copy}"})
            if done.returncode != 0:
                self.report.replay_diff.append(f"recctl replay failed: {done.stderr[-500:]}")
                return
            live, rebuilt = _projections(self.dsn), _projections(f"{base}/{copy}")
            for key in sorted(set(live) | set(rebuilt)):
                if live.get(key) != rebuilt.get(key):
                    self.report.replay_diff.append(
                        f"{key}: {live.get(key)} != {rebuilt.get(key)}"
                    )
            self.report.replay_ok = not self.report.replay_diff
        finally:
            admin(f"{base}/postgres", f"DROP DATABASE IF EXISTS {copy} WITH (FORCE)")


def _in_a_thread(read: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``read`` to completion from sync code called inside a running loop (the checks)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


def _projections(dsn: str) -> dict[tuple[str, str], tuple[Any, ...]]:
    async def read() -> dict[tuple[str, str], tuple[Any, ...]]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT projection, key, room, data, seq FROM projections")
        finally:
            await conn.close()
        return {(r[0], r[1]): (r[2], json.loads(r[3]), r[4]) for r in rows}

    return _in_a_thread(read)


async def run_replica_seed(cfg: ReplicaChaosConfig, workdir: Path, dsn: str) -> RunReport:
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    started = time.monotonic()
    run = ReplicaChaosRun(cfg, workdir, dsn)
    report = await run.execute()
    report.fault_profiles.extend(run.disruptions)  # what each disruption was, for the table
    report.duration_s = round(time.monotonic() - started, 1)
    return report
