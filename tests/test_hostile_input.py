"""Issue 20's edges found by hostile testing: names with a trailing newline, a 409 that told one
tenant another's channel names, and notifications that cannot be stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from tests.helpers import encode, notification, running, signed
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


@pytest.mark.parametrize(
    "where", ["noticeId", "cname", "sid"], ids=["surrogate-notice", "nul-cname", "surrogate-sid"]
)
async def test_a_notification_that_cannot_be_stored_is_quarantined_not_retried_for_ever(
    api: tuple[Starlette, httpx.AsyncClient], where: str
) -> None:
    """A lone surrogate failed at bind (UnicodeEncodeError): 503 for ever, and Agora resent it
    for ever; a NUL in a channel name was stored. Both are kept as raw text, answered 200."""
    app, client = api
    document = notification("poison-1", channel="room-1", sid="sid-1")
    bad = "x\x00y" if where == "cname" else "x\ud800y"
    if where == "noticeId":
        document["noticeId"] = bad
    else:
        document["payload"][where] = bad
    body = json.dumps(document, separators=(",", ":")).encode()  # ASCII: \\u escapes
    first = await client.post("/webhooks/agora", content=body, headers=signed(body))
    assert first.status_code == 200 and first.json()["duplicate"] is False, first.text
    again = await client.post("/webhooks/agora", content=body, headers=signed(body))
    assert again.status_code == 200 and again.json()["duplicate"] is True, "a resend: found"
    (event,) = [e for e in await app.state.context.store.read_log()
                if e.type == "agora.quarantined"]
    assert event.room is None and event.session is None, "no projection folds it"
    assert json.loads(event.payload["raw"]) == document, "the notification as sent"
    metrics = (await client.get("/metrics")).text
    assert 'webhook_requests_total{outcome="quarantined",source="agora"} 2.0' in metrics
    plain = encode(notification("fine-1"))
    assert (await client.post("/webhooks/agora", content=plain, headers=signed(plain))).json()[
        "duplicate"] is False, "other notifications are stored as ever"
