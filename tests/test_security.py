"""Security: every API route needs a token, tenants are isolated, and no configured secret ever
shows up in a log line, a response body or the event log after a full run."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from reconcilers.identity import UidRange
from service.config import Settings
from service.runtime import build_app
from tests.helpers import SECRET, running
from tests.procs import Server, clean_env, free_port, recctl

STORAGE = {
    "default": {"kind": "s3", "bucket": "b", "access_key_id": "AK", "secret_access_key": "S"}
}
APP_ID = "a" * 32  # a certificate needs a 32-hex app id, as Agora's
TOKENS = {"token-of-acme-0001": "acme", "token-of-globex-0001": "globex"}


def app_for(tmp_path: Path) -> Starlette:
    return build_app(
        Settings.from_env(
            {},
            database_url=f"sqlite:///{tmp_path}/events.db",
            agora_ncs_secret=SECRET,
            api_tokens=TOKENS,
            storage_profiles=STORAGE,
            agora_api_base_url=f"http://127.0.0.1:{free_port()}",  # nothing listens
        )
    )


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    app = app_for(tmp_path)
    async with running(app) as client:
        yield app, client


def api_routes(app: Starlette) -> list[tuple[str, str]]:
    """Every (method, concrete path) of the API: routes under /v1 and /api."""
    found: list[tuple[str, str]] = []
    for route in app.routes:
        if isinstance(route, Route) and route.path.startswith(("/v1", "/api")):
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            found += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dG9rZW4tb2YtYWNtZTo="},
        {"Authorization": "token-of-acme-0001"},
    ],
    ids=["none", "wrong", "empty", "basic", "no-scheme"],
)
async def test_every_api_route_is_401_without_a_valid_token(
    api: tuple[Starlette, httpx.AsyncClient], headers: dict[str, str]
) -> None:
    app, client = api
    routes = api_routes(app)
    assert len(routes) >= 4, routes  # the rooms API at least: the enumeration works
    for method, path in routes:
        response = await client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "unauthorized"


async def test_tenants_never_see_each_others_rooms(
    api: tuple[Starlette, httpx.AsyncClient],
) -> None:
    _, client = api
    acme = {"Authorization": "Bearer token-of-acme-0001"}
    globex = {"Authorization": "Bearer token-of-globex-0001"}
    created = await client.put("/v1/rooms/board/recording", json={}, headers=acme)
    assert created.status_code == 201
    generation = created.json()["generation"]

    assert (await client.get("/v1/rooms/board/recording", headers=globex)).status_code == 404
    assert (await client.delete("/v1/rooms/board/recording", headers=globex)).status_code == 404
    listed = await client.get("/v1/rooms", headers=globex)
    assert listed.status_code == 200 and listed.json()["items"] == []
    for query in ({"cursor": ""}, {"cursor": "../acme/"}, {"state": "recording"}):
        other = await client.get("/v1/rooms", headers=globex, params=query)
        assert other.json()["items"] == [], query
    # globex may have its own room of that name, but not on acme's Agora channel (409), and
    # neither write touches acme's room
    clash = await client.put("/v1/rooms/board/recording", json={"state": "stopped"}, headers=globex)
    assert clash.status_code == 409
    own = await client.put(
        "/v1/rooms/board/recording", json={"channel": "globex-board"}, headers=globex
    )
    assert own.status_code == 201
    mine = await client.get("/v1/rooms/board/recording", headers=acme)
    assert mine.json()["generation"] == generation and mine.json()["spec"]["state"] == "recording"
    assert mine.json()["spec"]["channel"] == "board"
    names = {i["room"] for i in (await client.get("/v1/rooms", headers=acme)).json()["items"]}
    assert names == {"board"}
    assert (await client.delete("/v1/rooms/board/recording", headers=globex)).status_code == 204
    assert (await client.get("/v1/rooms/board/recording", headers=acme)).status_code == 200


# -- secrets never leak ----------------------------------------------------------------------

SECRETS = {
    "AGORA_CUSTOMER_KEY": "cust-key-7Hq2Lm",
    "AGORA_CUSTOMER_SECRET": "cust-secret-Zp81Vw",
    "AGORA_NCS_SECRET": "ncs-secret-Kd93Xa",
    "AGORA_APP_CERTIFICATE": "0123456789abcdef0123456789abcdef",
    "TOKEN": "api-token-Qm54Rt",
    "ACCESS_KEY_ID": "AKIASECRETSCAN01",
    "SECRET_ACCESS_KEY": "storage-secret-Wn62Jy",
}


def forbidden_strings() -> dict[str, str]:
    """Each secret, and the forms it travels in (Basic auth is base64 of key:secret)."""
    basic = f"{SECRETS['AGORA_CUSTOMER_KEY']}:{SECRETS['AGORA_CUSTOMER_SECRET']}"
    found = dict(SECRETS)
    found["basic-auth"] = base64.b64encode(basic.encode()).decode()
    for name, value in SECRETS.items():
        found[f"{name} (base64)"] = base64.b64encode(value.encode()).decode().rstrip("=")
    return found


async def poll(check: object, within: float = 20.0) -> None:
    """Await ``check()`` (an async callable returning bool) until true or the deadline."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)  # polling interval
    raise TimeoutError("condition not met")


@pytest.mark.slow
async def test_no_secret_in_any_log_response_or_event(tmp_path: Path) -> None:
    emu_port, svc_port = free_port(), free_port()
    emu_url, svc_url = f"http://127.0.0.1:{emu_port}", f"http://127.0.0.1:{svc_port}"
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path}/events.db",
        LOG_LEVEL="DEBUG",
        AGORA_NCS_SECRET=SECRETS["AGORA_NCS_SECRET"],
        AGORA_APP_ID=APP_ID,
        AGORA_CUSTOMER_KEY=SECRETS["AGORA_CUSTOMER_KEY"],
        AGORA_CUSTOMER_SECRET=SECRETS["AGORA_CUSTOMER_SECRET"],
        AGORA_APP_CERTIFICATE=SECRETS["AGORA_APP_CERTIFICATE"],
        AGORA_API_BASE_URL=emu_url,
        API_TOKENS=f"{SECRETS['TOKEN']}:acme",
        STORAGE_PROFILES=json.dumps(
            {
                "default": {
                    "kind": "s3",
                    "bucket": "rec",
                    "access_key_id": SECRETS["ACCESS_KEY_ID"],
                    "secret_access_key": SECRETS["SECRET_ACCESS_KEY"],
                }
            }
        ),
        QUERY_INTERVAL_SECONDS="1",
        RESYNC_INTERVAL_SECONDS="1",
    )
    emulator = Server.start(
        [
            sys.executable,
            "-m",
            "service.cli",
            "emulate",
            "agora",
            "--port",
            str(emu_port),
            "--app-id",
            APP_ID,
            "--customer-key",
            SECRETS["AGORA_CUSTOMER_KEY"],
            "--customer-secret",
            SECRETS["AGORA_CUSTOMER_SECRET"],
            "--app-certificate",
            SECRETS["AGORA_APP_CERTIFICATE"],
            "--ncs-secret",
            SECRETS["AGORA_NCS_SECRET"],
            "--callback-url",
            f"{svc_url}/webhooks/agora",
            "--startup-seconds",
            "0.2",
            "--exit-seconds",
            "0.2",
            "--failover-seconds",
            "1",
        ],
        emu_port,
        env,
        tmp_path / "emulator.log",
    )
    service = Server.start(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(svc_port)],
        svc_port,
        env,
        tmp_path / "service.log",
    )
    bodies: list[str] = []
    uids = UidRange()
    try:
        await service.wait_healthy()
        auth = {"Authorization": f"Bearer {SECRETS['TOKEN']}"}
        async with (
            httpx.AsyncClient(base_url=svc_url, headers=auth, timeout=10) as svc,
            httpx.AsyncClient(base_url=emu_url, timeout=10) as emu,
        ):

            async def keep(response: httpx.Response) -> httpx.Response:
                bodies.append(f"{response.request.url} {response.headers} {response.text}")
                return response

            async def ours_live() -> list[dict[str, object]]:
                tasks = (await emu.get("/_emulator/tasks", params={"live": "true"})).json()
                return [t for t in tasks if uids.contains(str(t["uid"]))]

            async def recording() -> bool:
                live = await ours_live()
                return len(live) == 1 and live[0]["status"] in (4, 5)

            await poll(lambda: _up(emu))
            await emu.post("/_emulator/channels/standup/users", json={"uid": 11})
            spec = {"state": "recording", "options": {"recordingConfig": {"maxIdleTime": 30}}}
            await keep(await svc.put("/v1/rooms/standup/recording", json=spec))
            await poll(recording)
            (first,) = await ours_live()
            await emu.post(f"/_emulator/tasks/{first['sid']}/kill", json={"failover": False})
            await poll(recording)  # healed, with a token made from the certificate
            await keep(await svc.get("/v1/rooms/standup/recording"))
            await keep(await svc.get("/v1/rooms"))
            await keep(await svc.get("/v1/rooms/standup/recording", headers={"Authorization": ""}))
            await keep(await svc.put("/v1/rooms/x/recording", json={"options": {"token": "t"}}))
            await keep(await svc.post("/webhooks/agora", content=b"{}"))
            await keep(await svc.get("/metrics"))
            await keep(await svc.get("/readyz"))
            stop = {**spec, "state": "stopped"}
            await keep(await svc.put("/v1/rooms/standup/recording", json=stop))
            await poll(lambda: _none_live(ours_live))
            await keep(await svc.delete("/v1/rooms/standup/recording"))
    finally:
        service.stop()
        emulator.stop()
    events = recctl("events", "--json", env=env)
    assert events.returncode == 0, events.stderr
    assert '"intent.start"' in events.stdout or "intent.start" in events.stdout
    haystacks = {
        "service log": (tmp_path / "service.log").read_text(errors="replace"),
        "responses": "\n".join(bodies),
        "event log": events.stdout + events.stderr,
    }
    assert "result.start" in haystacks["event log"]
    leaks = [
        f"{name} in the {where}"
        for name, value in forbidden_strings().items()
        for where, text in haystacks.items()
        if value in text
    ]
    assert not leaks, leaks


async def _up(emu: httpx.AsyncClient) -> bool:
    try:
        return (await emu.get("/_emulator/health")).status_code == 200
    except httpx.TransportError:
        return False


async def _none_live(ours_live: object) -> bool:
    return not await ours_live()  # type: ignore[operator]
