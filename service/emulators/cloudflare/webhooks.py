"""Outgoing webhooks as RealtimeKit sends them (``docs/providers/cloudflare.md`` §2.2-§2.4).

A :class:`Webhook` renders each attempt: the JSON body, ``rtk-signature`` (RSA-SHA256 over those
exact bytes), ``rtk-webhook-id``, and ``rtk-uuid``, which is new for every delivery attempt
(RealtimeKit says "unique per delivery"), or fixed per event with ``stable_delivery_id``
(Dyte's reading). :data:`POLICY` is RealtimeKit's: any 2xx delivers; 5xx and network errors are
retried; other statuses fail for good.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from reconcilers.providers.cloudflare.signature import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_ID_HEADER,
    sign,
)
from service.emulators.framework.notifier import RetryPolicy

POLICY = RetryPolicy(
    delivered=lambda status: 200 <= status < 300,
    retry=lambda status: status is None or status >= 500,
)


def seeded_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class Webhook:
    """One event on its way; ``body`` is fixed, the delivery id may change per attempt."""

    url: str
    body: dict[str, Any]
    key: rsa.RSAPrivateKey = field(repr=False)
    webhook_id: str
    next_delivery_id: Callable[[], str]
    delivery_id: str | None = None
    attempts: list[str] = field(default_factory=list)

    @property
    def event(self) -> str:
        return str(self.body.get("event"))

    def render(self, notify_ms: int) -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()
        delivery = self.delivery_id or self.next_delivery_id()
        self.attempts.append(delivery)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(raw, self.key),
            DELIVERY_HEADER: delivery,
            WEBHOOK_ID_HEADER: self.webhook_id,
        }
        return raw, headers

    def describe(self) -> dict[str, Any]:
        recording = self.body.get("recording") or {}
        meeting = self.body.get("meeting") or {}
        return {
            "event": self.event,
            "recording_id": recording.get("id"),
            "status": recording.get("status"),
            "meeting_id": meeting.get("id"),
            "delivery_ids": list(self.attempts),
        }
