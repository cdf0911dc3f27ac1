"""Fixtures for the Agora emulator tests: a manual-clock emulator, an Agora client, a receiver."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.emulators.agora import AgoraEmulator, EmulatorConfig

APP_ID = "emulator-app"
AUTH = ("emulator-key", "emulator-secret")
BASE = f"/v1/apps/{APP_ID}/cloud_recording"
STORAGE = {"vendor": 1, "region": 0, "bucket": "b", "accessKey": "a", "secretKey": "s"}
RECEIVER_URL = "http://receiver.test/ncs"


def manual(**changes: Any) -> EmulatorConfig:
    """A test config: manual clock, no rate limit, 1 s startup, 10 s slices."""
    values: dict[str, Any] = {"speed": 0, "qps_limit": None, "startup_seconds": 1.0}
    values.update(changes)
    return EmulatorConfig(**values)


def start_request(mode: str, **extra: Any) -> dict[str, Any]:
    """A minimal valid start ``clientRequest`` for ``mode``."""
    if mode == "web":
        service = {
            "serviceName": "web_recorder_service",
            "errorHandlePolicy": "error_abort",
            "serviceParam": {"url": "https://example.com/page", "maxRecordingHour": 1},
        }
        request: dict[str, Any] = {
            "storageConfig": STORAGE,
            "extensionServiceConfig": {"extensionServices": [service]},
        }
    else:
        config: dict[str, Any] = {"channelType": 1, "maxIdleTime": 30}
        if mode == "individual":
            config["subscribeUidGroup"] = 0
        request = {"storageConfig": STORAGE, "recordingConfig": config}
    request.update(extra)
    return request


class Agora:
    """A thin Agora Cloud Recording client over any httpx transport."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.http = client

    async def acquire(
        self, cname: str = "room", uid: str = "1001", **client_request: Any
    ) -> httpx.Response:
        body = {"cname": cname, "uid": uid, "clientRequest": client_request}
        return await self.http.post(f"{BASE}/acquire", json=body)

    async def start(
        self,
        rid: str,
        mode: str = "mix",
        cname: str = "room",
        uid: str = "1001",
        client_request: dict[str, Any] | None = None,
    ) -> httpx.Response:
        body = {"cname": cname, "uid": uid, "clientRequest": client_request or start_request(mode)}
        return await self.http.post(f"{BASE}/resourceid/{rid}/mode/{mode}/start", json=body)

    async def session(
        self,
        mode: str = "mix",
        cname: str = "room",
        uid: str = "1001",
        client_request: dict[str, Any] | None = None,
    ) -> tuple[str, str]:
        """acquire + start; returns (resource id, sid)."""
        scene = {"scene": 1} if mode == "web" else {}
        acquired = await self.acquire(cname, uid, **scene)
        assert acquired.status_code == 200, acquired.text
        rid = acquired.json()["resourceId"]
        started = await self.start(rid, mode, cname, uid, client_request)
        assert started.status_code == 200, started.text
        return rid, started.json()["sid"]

    def url(self, rid: str, sid: str, mode: str, op: str) -> str:
        return f"{BASE}/resourceid/{rid}/sid/{sid}/mode/{mode}/{op}"

    async def query(self, rid: str, sid: str, mode: str = "mix") -> httpx.Response:
        return await self.http.get(self.url(rid, sid, mode, "query"))

    async def post(
        self,
        rid: str,
        sid: str,
        mode: str,
        op: str,
        client_request: dict[str, Any] | None = None,
        cname: str = "room",
        uid: str = "1001",
    ) -> httpx.Response:
        body = {"cname": cname, "uid": uid, "clientRequest": client_request or {}}
        return await self.http.post(self.url(rid, sid, mode, op), json=body)

    async def stop(
        self, rid: str, sid: str, mode: str = "mix", *, async_stop: bool = False, **ids: str
    ) -> httpx.Response:
        return await self.post(rid, sid, mode, "stop", {"async_stop": async_stop}, **ids)


def agora_client(emu: AgoraEmulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emu.app), base_url="http://agora.test", auth=AUTH
    )


@dataclass(frozen=True)
class Received:
    """One request the receiver got, raw body included (for signature checks)."""

    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def notice_id(self) -> str:
        return str(self.json["noticeId"])

    @property
    def event(self) -> int:
        return int(self.json["eventType"])


class Receiver:
    """A notification receiver: records every request; the n-th attempt at a notice gets
    ``statuses[n]`` (the last one repeats). ``gate``, when set, holds every answer."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [200])
        self.requests: list[Received] = []
        self.arrived: asyncio.Queue[Received] = asyncio.Queue()
        self.gate: asyncio.Event | None = None
        self.app = Starlette(routes=[Route("/ncs", self._handle, methods=["POST"])])
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://receiver.test"
        )

    async def _handle(self, request: Request) -> Response:
        got = Received(await request.body(), dict(request.headers))
        attempt = sum(1 for r in self.requests if r.notice_id == got.notice_id)
        self.requests.append(got)
        self.arrived.put_nowait(got)
        if self.gate is not None:
            await self.gate.wait()
        status = self.statuses[min(attempt, len(self.statuses) - 1)]
        return JSONResponse({"ok": status == 200}, status)

    def events(self, product: int | None = 3) -> list[int]:
        return [r.event for r in self.requests if product is None or r.json["productId"] == product]

    def recording(self) -> list[dict[str, Any]]:
        """Payloads of cloud recording notifications, in arrival order."""
        return [r.json for r in self.requests if r.json["productId"] == 3]


@pytest.fixture
async def emu() -> AsyncIterator[AgoraEmulator]:
    emulator = AgoraEmulator(manual())
    yield emulator
    await emulator.aclose()


@pytest.fixture
async def agora(emu: AgoraEmulator) -> AsyncIterator[Agora]:
    async with agora_client(emu) as client:
        yield Agora(client)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    yield got
    await got.client.aclose()


@contextlib.asynccontextmanager
async def running(
    config: EmulatorConfig, receiver: Receiver | None = None
) -> AsyncIterator[tuple[AgoraEmulator, Agora]]:
    """An emulator (delivering its callbacks into ``receiver``) and a client for it."""
    emulator = AgoraEmulator(config, http_client=receiver.client if receiver else None)
    try:
        async with agora_client(emulator) as client:
            yield emulator, Agora(client)
    finally:
        await emulator.aclose()
