"""An in-process world for reconciler tests: the Agora emulator on a manual clock, the intake
app on a real SQLite file, and a reconciler reading the same store, all over httpx transports.

Passes are driven by hand and time moves only through ``advance``, so every scenario is exact
and fast; the real-server tests (``tests/test_service_e2e.py``) cover the same over sockets.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from reconcilers.engine import PassResult, Reconciler
from reconcilers.events import NewEvent
from reconcilers.plan import PlanConfig
from reconcilers.projections import PROJECTIONS
from reconcilers.providers.agora.adapter import AgoraProvider
from reconcilers.providers.agora.client import AgoraConfig
from reconcilers.providers.base import StorageTarget
from service.config import Settings
from service.emulators.agora import AgoraEmulator, EmulatorConfig, FaultConfig
from service.runtime import create_app
from service.store import ObservableStore, open_store

NCS_SECRET = "ncs-secret-for-tests"
STORAGE = StorageTarget("s3", "bucket", "us-east-1", "AKIATEST", "secret-key-for-tests")


@dataclass
class World:
    emu: AgoraEmulator
    store: ObservableStore
    reconciler: Reconciler

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.emu.clock.now(), UTC)

    async def declare(self, room: str, **spec: Any) -> str:
        tenant, name = "acme", room
        key = f"{tenant}/{name}"
        full = {"state": "recording", "provider": "agora", "mode": "mix", "channel": name,
                "storage": "default", "options": {"recordingConfig": {"maxIdleTime": 30}},
                **spec}
        await self.store.append(NewEvent(
            source="api", dedup_key=f"{key}|{full}", type="room.desired", room=key,
            payload={"tenant": tenant, "name": name, "spec": full,
                     "channel_key": f"agora/{full['channel']}"},
            occurred_at=self.now(),
        ))
        return key

    async def tick(self, seconds: float) -> None:
        """Move emulated time, and wait until the callbacks it caused are stored."""
        self.emu.advance(seconds)
        await self.emu.settle()

    async def run(self, key: str, passes: int = 1, step: float = 5.0) -> PassResult:
        """Reconcile ``key`` ``passes`` times, ``step`` emulated seconds apart."""
        result = None
        for _ in range(passes):
            result = await self.reconciler.reconcile(key)
            await self.emu.settle()
            await self.tick(step)
        assert result is not None
        return result

    def live_tasks(self, cname: str) -> list[Any]:
        return self.emu.tasks(cname=cname, live=True)


@contextlib.asynccontextmanager
async def world(tmp_path: Path, faults: FaultConfig | None = None,
                config: PlanConfig | None = None) -> AsyncIterator[World]:
    store = await open_store(f"sqlite:///{tmp_path / 'e2e.db'}", PROJECTIONS)
    settings = Settings(agora_ncs_secret=[NCS_SECRET])  # type: ignore[list-item]
    intake = create_app(
        settings, store=store, clock=lambda: datetime.fromtimestamp(emu.clock.now(), UTC)
    )
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(store.close)  # even when the test fails: no thread left behind
        await stack.enter_async_context(intake.router.lifespan_context(intake))
        sender = httpx.AsyncClient(transport=httpx.ASGITransport(app=intake))
        emu = AgoraEmulator(
            EmulatorConfig(speed=0, qps_limit=None, ncs_secret=NCS_SECRET, seed=7,
                           callback_url="http://service/webhooks/agora",
                           faults=faults or FaultConfig(side_effect_rate=0.0)),
            http_client=sender,
        )
        async with emu:
            provider = AgoraProvider(
                AgoraConfig("emulator-app", "emulator-key", "emulator-secret",
                            base_url="http://agora"),
                transport=httpx.ASGITransport(app=emu.app),
                clock=emu.clock.now,
            )
            w = World(emu, store, Reconciler(
                store, {"agora": provider}, lambda _: STORAGE, config or PlanConfig(),
            ))
            w.reconciler.clock = w.now
            try:
                yield w
            finally:
                await provider.aclose()
                await sender.aclose()
