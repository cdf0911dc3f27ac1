"""Cloudflare rooms through the whole service: settings → providers → desired-state API
(validation naming the field) → reconciler → the emulator, and ``recctl emulate cloudflare``."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from reconcilers.ratelimit import TokenBucket
from service import cli
from service.config import Settings
from service.emulators.cloudflare import CloudflareEmulator
from service.emulators.cloudflare import cli as emulator_cli
from service.runtime import build_app, build_providers
from tests.cloudflare_helpers import ACCOUNT, APP, PUBLIC_PEM, TOKEN, manual, transport
from tests.helpers import running

ENV = {
    "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
    "CLOUDFLARE_APP_ID": APP,
    "CLOUDFLARE_API_TOKEN": TOKEN,
    "CLOUDFLARE_API_BASE_URL": "http://cloudflare.test/client/v4",
    "CLOUDFLARE_WEBHOOK_PUBLIC_KEY": PUBLIC_PEM,
    "API_TOKENS": "t0ken-0123456789ab:acme",
    "STORAGE_PROFILES": json.dumps({"default": {"kind": "s3", "bucket": "b"}}),
}


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({**ENV, **env}, database_url=f"sqlite:///{tmp_path}/svc.db")


def test_the_cloudflare_provider_is_built_only_when_configured(tmp_path: Path) -> None:
    bucket = TokenBucket(10)
    assert set(build_providers(settings(tmp_path), bucket)) == {"agora", "cloudflare"}
    bare = Settings.from_env({}, database_url=f"sqlite:///{tmp_path}/x.db")
    assert set(build_providers(bare, bucket)) == {"agora"}
    assert TOKEN in settings(tmp_path).secret_values()
    assert TOKEN not in repr(settings(tmp_path))


Service = tuple[httpx.AsyncClient, CloudflareEmulator, Starlette]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    emu = CloudflareEmulator(manual())
    async with emu:
        app = build_app(settings(tmp_path), cloudflare_transport=transport(emu))
        async with running(app) as client:
            client.headers["Authorization"] = "Bearer t0ken-0123456789ab"
            yield client, emu, app


async def put(client: httpx.AsyncClient, room: str, **spec: Any) -> httpx.Response:
    body = {"provider": "cloudflare", "mode": "mix", **spec}
    return await client.put(f"/v1/rooms/{room}/recording", json=body)


async def test_a_cloudflare_room_is_declared_and_recorded(service: Service) -> None:
    client, emu, app = service
    emu.join("meeting-1", "p1")
    created = await put(client, "weekly", channel="meeting-1",
                        options={"video_config": {"codec": "H264"}})
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["provider"] == "cloudflare"
    # The controller reconciles the room too, concurrently: whoever starts first, the other's
    # start conflicts and adopts the same recording (one active recording per meeting).
    await app.state.runtime.controller.reconciler.reconcile("acme/weekly")
    await app.state.runtime.controller.reconciler.reconcile("acme/weekly")
    (recording,) = emu.recordings(meeting_id="meeting-1")
    view = (await client.get("/v1/rooms/weekly/recording")).json()
    assert view["observed"]["session"]["sid"] == recording["id"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"options": {"video_config": {"width": 4000}}}, "options.video_config.width"),
        ({"options": {"allow_multiple_recordings": True}}, "options.allow_multiple_recordings"),
        ({"options": {"streamSubscribe": {}}}, "options.streamSubscribe"),
        ({"mode": "individual"}, "options.mode"),
    ],
)
async def test_bad_cloudflare_specs_are_422_naming_the_field(
    service: Service, spec: dict[str, Any], field: str
) -> None:
    client, _, _ = service
    response = await put(client, "weekly", **spec)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_an_unconfigured_provider_is_422(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if not k.startswith("CLOUDFLARE_")}
    bare = Settings.from_env(env, database_url=f"sqlite:///{tmp_path}/b.db")
    async with running(build_app(bare)) as client:
        client.headers["Authorization"] = "Bearer t0ken-0123456789ab"
        response = await put(client, "weekly")
        assert response.status_code == 422 and response.json()["error"]["field"] == "provider"


def test_recctl_emulate_cloudflare_reaches_the_emulator_cli(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(emulator_cli, "main", lambda args: seen.append(args) or 0)
    assert cli.main(["emulate", "cloudflare", "--port", "9002", "--speed", "30"]) == 0
    assert seen[0].port == 9002 and emulator_cli.config_from_args(seen[0]).speed == 30
