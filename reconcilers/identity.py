"""Deterministic identities: recorder uids per segment, and intent ids.

A retried start for the same segment uses the same uid, so the provider's own uniqueness
(Agora: app id + channel + uid) refuses a second task instead of recording twice. Consecutive
segments alternate between a room's primary and spare uid, Agora's advice for restarts, so a
make-before-break rollover never kicks the recorder it is replacing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@dataclass(frozen=True)
class UidRange:
    """The uids reserved for our recorders: ``[base, base + span)``; must not collide with users."""

    base: int = 4_000_000_000
    span: int = 200_000_000

    def recorder_uid(self, room: str, segment: int) -> str:
        pair = _digest(room) % (self.span // 2)
        return str(self.base + pair * 2 + (segment % 2))

    def contains(self, uid: str | int | None) -> bool:
        try:
            value = int(uid) if uid is not None else -1
        except ValueError:
            return False
        return self.base <= value < self.base + self.span


def intent_id(room: str, generation: int, segment: int, action: str, attempt: int = 0) -> str:
    """The dedup key of an intent: a retried intent is the same intent."""
    return f"{room}|g{generation}|s{segment}|{action}|a{attempt}"
