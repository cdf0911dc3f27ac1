"""In-process test helpers: run an app's lifespan, sign and build Agora notifications."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette

from reconcilers.events import Event, Row

SECRET = "test-ncs-secret"


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan started, and a client that talks to it without a socket."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def notification(
    notice_id: str,
    *,
    event_type: int = 40,
    product_id: int = 3,
    channel: str = "room-1",
    sid: str = "sid-1",
    uid: str = "4000000001",
    sequence: int = 0,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A cloud-recording notification as Agora sends it
    (``docs/providers/agora.md#8-notifications-ncs``)."""
    return {
        "noticeId": notice_id,
        "productId": product_id,
        "eventType": event_type,
        "notifyMs": 1_700_000_000_000 + sequence,
        "sid": sid,
        "payload": {
            "cname": channel,
            "uid": uid,
            "sid": sid,
            "sequence": sequence,
            "sendts": 1_700_000_000_000 + sequence,
            "serviceType": 1,
            "details": details or {"msgName": "recorder_started", "status": 0},
        },
    }


def signed(body: bytes, secret: str = SECRET, header: str = "Agora-Signature-V2") -> dict[str, str]:
    algorithm = hashlib.sha256 if header.lower().endswith("v2") else hashlib.sha1
    digest = hmac.new(secret.encode(), body, algorithm).hexdigest()
    return {header: digest, "Content-Type": "application/json"}


def encode(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


class Boom:
    """Fails on events of type ``poison`` (or on every event): a projection bug."""

    name = "boom"

    def __init__(self, always: bool = False) -> None:
        self.always = always

    def keys(self, event: Event) -> Sequence[str]:
        return ["x"]

    def apply(self, row: Row | None, event: Event) -> Row | None:
        if self.always or event.type == "poison":
            raise RuntimeError("projection bug")
        return row
