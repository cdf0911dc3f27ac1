"""The whole service in process: ``build_app`` (intake, API, controller) against the Agora
emulator, each reaching the other through an httpx ASGI transport (no sockets, real HTTP
semantics). The controller runs for real; the emulator's clock is manual unless asked.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from service.config import Settings
from service.emulators.agora import AgoraEmulator, EmulatorConfig
from service.runtime import build_app

TOKEN_A, TOKEN_B = "token-tenant-a-0001", "token-tenant-b-0001"
NCS_SECRET = "ncs-secret-service-tests"
PROFILES = {
    "default": {
        "kind": "s3",
        "bucket": "recordings",
        "access_key_id": "AKIASERVICETEST",
        "secret_access_key": "storage-secret-service-tests",
    }
}


class _Late:
    """An ASGI app filled in later: the emulator needs the service's address before it exists."""

    app: Starlette | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


@dataclass
class Service:
    app: Starlette
    emu: AgoraEmulator
    a: httpx.AsyncClient  # tenant "acme"
    b: httpx.AsyncClient  # tenant "globex"
    anonymous: httpx.AsyncClient

    async def until(
        self, check: Callable[[], Awaitable[bool]], within: float = 10.0, what: str = ""
    ) -> None:
        """Poll ``check`` until true (the controller works in the background)."""
        deadline = time.monotonic() + within
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within}s: {what}")
            await self.emu.settle()
            await _yield()


async def _yield() -> None:
    import asyncio

    await asyncio.sleep(0.01)  # a polling interval, not a synchronisation


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings.from_env(
        {},
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        agora_app_id="emulator-app",
        agora_customer_key="emulator-key",
        agora_customer_secret="emulator-secret",
        agora_api_base_url="http://agora",
        agora_ncs_secret=NCS_SECRET,
        api_tokens=f"{TOKEN_A}:acme,{TOKEN_B}:globex",
        storage_profiles=json.dumps(PROFILES),
        **overrides,
    )


@contextlib.asynccontextmanager
async def service(
    tmp_path: Path, config: EmulatorConfig | None = None, **overrides: Any
) -> AsyncIterator[Service]:
    late = _Late()
    sender = httpx.AsyncClient(transport=httpx.ASGITransport(app=late))
    emu = AgoraEmulator(
        config
        or EmulatorConfig(
            speed=0, qps_limit=None, ncs_secret=NCS_SECRET, seed=3,
            callback_url="http://service/webhooks/agora",
        ),
        http_client=sender,
    )
    app = build_app(
        settings(tmp_path, **overrides),
        transport=httpx.ASGITransport(app=emu.app),
        clock=lambda: datetime.fromtimestamp(emu.clock.now(), UTC),  # one time for all
    )
    late.app = app

    def client(token: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://service", headers=headers
        )

    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(emu)
        stack.push_async_callback(sender.aclose)
        await stack.enter_async_context(app.router.lifespan_context(app))
        a, b, anonymous = [
            await stack.enter_async_context(client(t)) for t in (TOKEN_A, TOKEN_B, None)
        ]
        yield Service(app, emu, a, b, anonymous)
