"""The ``idempotency`` projection: the first answer to each API ``Idempotency-Key``.

An API write that carries a key records, in the same event as the write itself, the key, a
fingerprint of the request and the status it was answered with (``payload["idempotency"]``).
A later request with the same key is then answered from this row: the same answer for the same
request, and a refusal (422, as the IETF ``Idempotency-Key`` draft says) for another one. A
request that changed nothing is recorded by an ``api.request`` event of its own, so that a key
first used for a no-op cannot later be spent on a different write.

Key: ``<room key>|<idempotency key>`` (the room key starts with the tenant), index: room key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from reconcilers.events import Event, Row

#: The event that records an idempotent request which wrote nothing else.
REQUEST_RECORDED = "api.request"


def fingerprint(body: Any) -> str:
    """A stable digest of a request body (keys sorted), to tell two requests apart."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def idempotency_key(room: str, key: str) -> str:
    return f"{room}|{key}"


class IdempotencyKeys:
    """Each key's first request: fingerprint, status, and what it created (a recording id)."""

    name = "idempotency"

    def keys(self, event: Event) -> Sequence[str]:
        record = event.payload.get("idempotency")
        if event.source == "api" and event.room and isinstance(record, dict) and record.get("key"):
            return [idempotency_key(event.room, str(record["key"]))]
        return []

    def apply(self, row: Row | None, event: Event) -> Row | None:
        if row is not None:
            return row  # the first answer stands
        record: dict[str, Any] = dict(event.payload["idempotency"])
        record["seq"] = event.seq
        key = idempotency_key(event.room or "", str(record["key"]))
        return Row(self.name, key, event.room, record, event.seq)
