"""Issue 20's edges found by hostile testing: names with a trailing newline, a 409 that told one
tenant another's channel names, and notifications that cannot be stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from tests.helpers import running
from tests.test_security import app_for

ACME = {"Authorization": "Bearer token-of-acme-0001"}
GLOBEX = {"Authorization": "Bearer token-of-globex-0001"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    app = app_for(tmp_path)
    async with running(app) as client:
        yield app, client


async def test_names_with_a_trailing_newline_are_refused(
    api: tuple[Starlette, httpx.AsyncClient],
) -> None:
    """``$`` let ``r1\\n`` through: ``PUT /v1/rooms/r1%0A`` made a room, and a recorder was
    started on channel ``"nlrec\\n"``."""
    _, client = api
    r = await client.put("/v1/rooms/r1%0A/recording", json={}, headers=ACME)
    assert r.status_code == 422 and r.json()["error"]["field"] == "room", r.text
    r = await client.put("/v1/rooms/r1/recording", json={"channel": "nlrec\n"}, headers=ACME)
    assert r.status_code == 422 and r.json()["error"]["field"] == "channel", r.text
    listed = (await client.get("/v1/rooms", headers=ACME)).json()
    assert listed["items"] == [], "nothing changed"


async def test_a_channel_taken_by_another_tenant_is_not_named(
    api: tuple[Starlette, httpx.AsyncClient],
) -> None:
    """One provider account, one namespace of channels: a channel is one room's across
    tenants. The 409 names the holding room to its own tenant only."""
    _, client = api
    body = {"state": "stopped", "channel": "chanA"}
    first = await client.put("/v1/rooms/alpha/recording", json=body, headers=ACME)
    assert first.status_code == 201
    theirs = await client.put("/v1/rooms/beta/recording", json=body, headers=GLOBEX)
    assert theirs.status_code == 409
    assert theirs.json()["error"] == {
        "code": "conflict", "message": "channel: not available", "field": "channel"}
    mine = await client.put("/v1/rooms/gamma/recording", json=body, headers=ACME)
    assert mine.status_code == 409 and "alpha" in mine.json()["error"]["message"]
