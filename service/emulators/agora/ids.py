"""Identifiers: sids, failover uids, notice ids, and self-describing resource ids.

A resource id carries its own claim (app id, channel, uid, acquire time, scene, settings)
under an HMAC, like Agora's opaque encrypted ids. Acquire therefore stores nothing: bulk
acquires cost no memory, expiry (433) and mismatches (432) are read from the id itself, and
only *used* ids are remembered (to answer a second start with 7). Everything is drawn from
generators seeded by the emulator seed, so one seed gives the same ids every run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

_MAC_BYTES = 16


@dataclass(frozen=True)
class ResourceClaim:
    """What acquire promised: the resource is for this app, channel and uid only."""

    app_id: str
    cname: str
    uid: str
    acquired_ms: int
    scene: int
    expired_hour: int
    region: str | None
    #: Keys and digest of ``startParameter``, which start must match.
    start_keys: tuple[str, ...]
    start_digest: str


def digest_of(params: dict[str, Any], keys: tuple[str, ...]) -> str:
    """A short stable digest of ``params`` restricted to ``keys`` (the startParameter check)."""
    subset = {k: params.get(k) for k in keys}
    canonical = json.dumps(subset, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class IdSource:
    """Deterministic identifiers for one emulator; one generator per kind of id."""

    def __init__(self, seed: int, app_id: str) -> None:
        self._sids = random.Random(f"{seed}:sid")
        self._uids = random.Random(f"{seed}:failover-uid")
        self._notices = random.Random(f"{seed}:notice")
        self._nonces = random.Random(f"{seed}:resource")
        self._key = hashlib.sha256(f"agora-emulator:{seed}:{app_id}".encode()).digest()

    def sid(self) -> str:
        """32 lowercase hex characters, like Agora's."""
        return f"{self._sids.getrandbits(128):032x}"

    def recorder_uid(self) -> int:
        """A random uid for a recorder that rejoins after failover."""
        return self._uids.randint(100_000, 2**32 - 1)

    def notice_id(self) -> str:
        return str(uuid.UUID(int=self._notices.getrandbits(128), version=4))

    def resource_id(self, claim: ResourceClaim) -> str:
        fields = [
            claim.app_id,
            claim.cname,
            claim.uid,
            claim.acquired_ms,
            claim.scene,
            claim.expired_hour,
            claim.region,
            list(claim.start_keys),
            claim.start_digest,
            self._nonces.getrandbits(48),
        ]
        raw = json.dumps(fields, separators=(",", ":")).encode()
        mac = hmac.new(self._key, raw, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(raw + mac).decode().rstrip("=")

    def parse_resource(self, resource_id: str) -> ResourceClaim | None:
        """The claim inside a resource id, or ``None`` if it is not one of ours (code 1001)."""
        try:
            blob = base64.urlsafe_b64decode(resource_id + "=" * (-len(resource_id) % 4))
        except (binascii.Error, ValueError):
            return None
        raw, mac = blob[:-_MAC_BYTES], blob[-_MAC_BYTES:]
        good = hmac.new(self._key, raw, hashlib.sha256).digest()[:_MAC_BYTES]
        if len(blob) <= _MAC_BYTES or not hmac.compare_digest(mac, good):
            return None
        try:
            app_id, cname, uid, acquired, scene, hours, region, keys, digest, _ = json.loads(raw)
        except (ValueError, TypeError):
            return None
        return ResourceClaim(
            app_id, cname, uid, int(acquired), int(scene), int(hours), region, tuple(keys), digest
        )
