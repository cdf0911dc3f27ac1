"""The service and the Agora emulator as real processes on loopback, over real HTTP.

The scenarios the reconciler issue names: heal a killed recorder with webhooks and with webhooks
dropped, stop an orphan, survive ``kill -9`` between a start's intent and its result without a
second session, and keep every provider call under the rate limit.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import Server, clean_env, free_port

pytestmark = pytest.mark.slow

TOKEN = "e2e-api-token-0001"
NCS = "e2e-ncs-secret"
SPEC = {"state": "recording", "mode": "mix", "options": {"recordingConfig": {"maxIdleTime": 30}}}


@dataclass
class Stack:
    emulator: Server
    service: Server
    env: dict[str, str]
    db: Path
    tmp: Path

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.service.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    def emu(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.emulator.url, timeout=10)

    async def restart_service(self) -> None:
        self.service.stop()
        self.service = Server.start(
            self.service.process.args,  # type: ignore[arg-type]
            int(self.service.url.rsplit(":", 1)[1]),
            self.env,
            self.tmp / "service.log",
        )
        await self.service.wait_healthy()

    def log_types(self) -> list[tuple[str, dict[str, Any]]]:
        """The event log's (type, payload), read from the file as an outsider would."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT type, payload FROM events ORDER BY seq").fetchall()
        return [(t, json.loads(p)) for t, p in rows]


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within}s: {what}")
        await _pause()
    return time.monotonic() - started


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.05)  # polling interval, not a synchronisation


@contextlib.asynccontextmanager
async def stack(tmp_path: Path, *emulator_flags: str, **env: str) -> AsyncIterator[Stack]:
    emulator_port, service_port = free_port(), free_port()
    db = tmp_path / "e2e.db"
    settings = clean_env(
        DATABASE_URL=f"sqlite:///{db}",
        AGORA_NCS_SECRET=NCS,
        AGORA_APP_ID="emulator-app",
        AGORA_CUSTOMER_KEY="emulator-key",
        AGORA_CUSTOMER_SECRET="emulator-secret",
        AGORA_API_BASE_URL=f"http://127.0.0.1:{emulator_port}",
        API_TOKENS=f"{TOKEN}:acme",
        STORAGE_PROFILES=json.dumps(
            {"default": {"kind": "s3", "bucket": "b", "access_key_id": "AKIAE2E",
                         "secret_access_key": "e2e-storage-secret"}}
        ),
        QUERY_INTERVAL_SECONDS="2",
        FAILOVER_WINDOW_SECONDS="3",
        RESYNC_INTERVAL_SECONDS="2",
        **env,
    )
    emulator = Server.start(
        [sys.executable, "-m", "service.cli", "emulate", "agora", "--port", str(emulator_port),
         "--ncs-secret", NCS, "--seed", "5",
         "--callback-url", f"http://127.0.0.1:{service_port}/webhooks/agora",
         "--callback-retry-delays", "0,1,2", *emulator_flags],
        emulator_port, clean_env(), tmp_path / "emulator.log",
    )
    service = Server.start(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(service_port)],
        service_port, settings, tmp_path / "service.log",
    )
    s = Stack(emulator, service, settings, db, tmp_path)
    try:
        await emulator.wait_healthy(path="/_emulator/health")
        await service.wait_healthy()
        yield s
    finally:
        s.service.stop()
        s.emulator.stop()


async def join(emu: httpx.AsyncClient, channel: str, uid: int) -> None:
    (await emu.post(f"/_emulator/channels/{channel}/users", json={"uid": uid})).raise_for_status()


async def tasks(emu: httpx.AsyncClient, channel: str, live: bool = False) -> list[dict[str, Any]]:
    params = {"cname": channel, **({"live": "true"} if live else {})}
    answer = (await emu.get("/_emulator/tasks", params=params)).raise_for_status()
    found: list[dict[str, Any]] = answer.json()
    return found


async def recording_sid(api: httpx.AsyncClient, room: str) -> str | None:
    view = (await api.get(f"/v1/rooms/{room}/recording")).json()
    rec = next(c for c in view["conditions"] if c["type"] == "Recording")
    return (view["observed"].get("session") or {}).get("sid") if rec["status"] == "True" else None


async def heal(tmp_path: Path, drop_callbacks: bool) -> float:
    async with stack(tmp_path) as s, s.api() as api, s.emu() as emu:
        await join(emu, "standup", 11)
        (await api.put("/v1/rooms/standup/recording", json=SPEC)).raise_for_status()

        async def recording() -> bool:
            return await recording_sid(api, "standup") is not None

        await until(recording, 15, "standup recording")
        (first,) = await tasks(emu, "standup", live=True)
        if drop_callbacks:
            await emu.patch("/_emulator/faults", json={"callback_drop_rate": 1.0})
        await emu.post(f"/_emulator/tasks/{first['sid']}/kill", json={"failover": False})

        async def replaced() -> bool:
            live = await tasks(emu, "standup", live=True)
            return any(t["sid"] != first["sid"] and t["status"] in (4, 5) for t in live)

        took = await until(replaced, 30, "a replacement recorder")
        assert len(await tasks(emu, "standup", live=True)) == 1
        return took


async def test_killed_recorder_is_healed_over_real_http_with_webhooks(tmp_path: Path) -> None:
    took = await heal(tmp_path, drop_callbacks=False)
    assert took < 10, "with webhooks the replacement starts at once (plus the emulator's 2 s)"


async def test_killed_recorder_is_healed_with_every_webhook_dropped(tmp_path: Path) -> None:
    took = await heal(tmp_path, drop_callbacks=True)
    # Found by a query (interval 2 s), then the 404 waited out (failover window 3 s).
    assert took < 20


async def test_kill_9_between_start_intent_and_result_never_doubles(tmp_path: Path) -> None:
    async with stack(tmp_path, "--latency", "1.5") as s, s.api() as api, s.emu() as emu:
        await join(emu, "standup", 11)
        (await api.put("/v1/rooms/standup/recording", json=SPEC)).raise_for_status()

        async def start_in_flight() -> bool:
            stats = (await emu.get("/_emulator/stats")).json()
            return bool(stats["requests"].get("start"))

        # The emulator holds its answer 1.5 s: the call has arrived, its answer has not.
        await until(start_in_flight, 15, "the start call at the emulator")
        assert any(t == "intent.start" for t, _ in s.log_types())  # logged before the call
        s.service.kill9()  # the start call is on its way: its result will never be written
        assert not any(t == "result.start" for t, _ in s.log_types())

        async def started_anyway() -> bool:
            return len(await tasks(emu, "standup")) == 1

        await until(started_anyway, 10, "the emulator carried the start out")
        await emu.put("/_emulator/faults", json={})
        await s.restart_service()

        async def adopted() -> bool:
            return await recording_sid(api, "standup") is not None

        await until(adopted, 30, "the task adopted after restart")
        (task,) = await tasks(emu, "standup")
        assert await recording_sid(api, "standup") == task["sid"], "adopted, not replaced"
        assert any(t == "session.adopted" for t, _ in s.log_types())


async def test_orphan_of_a_deleted_room_is_stopped(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.api() as api, s.emu() as emu:
        await join(emu, "standup", 11)
        (await api.put("/v1/rooms/standup/recording", json=SPEC)).raise_for_status()

        async def recording() -> bool:
            return await recording_sid(api, "standup") is not None

        await until(recording, 15, "standup recording")
        (await api.delete("/v1/rooms/standup/recording")).raise_for_status()

        async def stopped() -> bool:
            return not await tasks(emu, "standup", live=True)

        await until(stopped, 15, "the orphan stopped")


async def test_provider_calls_stay_under_the_rate_limit(tmp_path: Path) -> None:
    rooms = [f"room{i}" for i in range(12)]
    async with (
        stack(tmp_path, "--qps-limit", "6", AGORA_RATE_LIMIT_QPS="5") as s,
        s.api() as api,
        s.emu() as emu,
    ):
        for room in rooms:
            await join(emu, room, 11)
            (await api.put(f"/v1/rooms/{room}/recording", json=SPEC)).raise_for_status()

        async def all_recording() -> bool:
            return all([await recording_sid(api, r) for r in rooms])

        took = await until(all_recording, 60, "every room recording")
        stats = (await emu.get("/_emulator/stats")).json()
        assert stats["rate_limited"] == 0, stats
        assert stats["max_accepted_qps"] <= 6
        # 12 rooms x (acquire + start) at 5/s is at least ~4 s, minus the bucket's burst.
        assert took >= 2.0
