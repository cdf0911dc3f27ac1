"""A mixed in-process world: the Agora and Cloudflare emulators on manual clocks kept in step,
the intake app (both webhooks, verified) on a real SQLite file, and one reconciler with both
providers. A sibling of ``tests/e2e_harness.py``, which stays Agora-only."""

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
from reconcilers.providers.cloudflare.adapter import CloudflareProvider
from service.config import Settings
from service.emulators.agora import AgoraEmulator
from service.emulators.agora import EmulatorConfig as AgoraEmulatorConfig
from service.emulators.agora import FaultConfig as AgoraFaults
from service.emulators.cloudflare import CloudflareEmulator
from service.runtime import create_app
from service.store import ObservableStore, open_store
from tests.cloudflare_helpers import CONFIG, PUBLIC_PEM, manual, transport
from tests.e2e_harness import NCS_SECRET, STORAGE


@dataclass
class MixedWorld:
    agora: AgoraEmulator
    cloudflare: CloudflareEmulator
    store: ObservableStore
    reconciler: Reconciler

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.agora.clock.now(), UTC)

    async def declare(self, room: str, provider: str, **spec: Any) -> str:
        key = f"acme/{room}"
        options = {"recordingConfig": {"maxIdleTime": 30}} if provider == "agora" else {}
        full = {"state": "recording", "provider": provider, "mode": "mix", "channel": room,
                "storage": "default", "options": options, **spec}
        await self.store.append(NewEvent(
            source="api", dedup_key=f"{key}|{full}", type="room.desired", room=key,
            payload={"tenant": "acme", "name": room, "spec": full,
                     "channel_key": f"{provider}/{full['channel']}"},
            occurred_at=self.now(),
        ))
        return key

    async def tick(self, seconds: float) -> None:
        """Move both emulated clocks, and wait until the webhooks they caused are stored."""
        self.agora.advance(seconds)
        self.cloudflare.advance(seconds)
        await self.agora.settle()
        await self.cloudflare.settle()

    async def run(self, *keys: str, passes: int = 1, step: float = 5.0) -> list[PassResult]:
        """Reconcile every key ``passes`` times, ``step`` emulated seconds apart."""
        results: list[PassResult] = []
        for _ in range(passes):
            results = [await self.reconciler.reconcile(key) for key in keys]
            await self.tick(step)
        return results

    def live(self, meeting: str) -> list[dict[str, Any]]:
        return self.cloudflare.recordings(meeting_id=meeting, live=True)


@contextlib.asynccontextmanager
async def mixed_world(tmp_path: Path, config: PlanConfig | None = None,
                      **cloudflare: Any) -> AsyncIterator[MixedWorld]:
    store = await open_store(f"sqlite:///{tmp_path / 'mixed.db'}", PROJECTIONS)
    settings = Settings(
        agora_ncs_secret=[NCS_SECRET],  # type: ignore[list-item]
        cloudflare_webhook_public_key=PUBLIC_PEM,  # type: ignore[arg-type]
    )
    intake = create_app(  # "our time" is the emulators' (kept in step): the intake's too
        settings, store=store, clock=lambda: datetime.fromtimestamp(agora.clock.now(), UTC)
    )
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        await stack.enter_async_context(intake.router.lifespan_context(intake))
        sender = httpx.AsyncClient(transport=httpx.ASGITransport(app=intake))
        stack.push_async_callback(sender.aclose)
        cf_emu = CloudflareEmulator(
            manual(webhook_url="http://service/webhooks/cloudflare", seed=11, **cloudflare),
            http_client=sender,
        )
        agora = AgoraEmulator(
            AgoraEmulatorConfig(speed=0, qps_limit=None, ncs_secret=NCS_SECRET, seed=7,
                                callback_url="http://service/webhooks/agora",
                                faults=AgoraFaults(side_effect_rate=0.0)),
            http_client=sender,
        )
        await stack.enter_async_context(agora)
        await stack.enter_async_context(cf_emu)
        agora_provider = AgoraProvider(
            AgoraConfig("emulator-app", "emulator-key", "emulator-secret",
                        base_url="http://agora"),
            transport=httpx.ASGITransport(app=agora.app), clock=agora.clock.now,
        )
        cf_provider = CloudflareProvider(CONFIG, transport=transport(cf_emu))
        stack.push_async_callback(agora_provider.aclose)
        stack.push_async_callback(cf_provider.aclose)
        world = MixedWorld(agora, cf_emu, store, Reconciler(
            store, {"agora": agora_provider, "cloudflare": cf_provider}, lambda _: STORAGE,
            config or PlanConfig(),
        ))
        world.reconciler.clock = world.now
        yield world
