"""Rooms to shards, shards to replicas: pure functions, the same answer on every replica.

A key (``tenant/room`` or ``channel:<provider>/<channel>``) falls into one of :data:`SHARDS`
shards by a stable hash (never Python's ``hash``: it is salted per process). The shards are
spread over the live replicas by rendezvous (highest random weight) hashing: each shard goes
to the replica with the highest score for it, so when a replica joins or leaves only the
shards it wins or held move, about ``1/n`` of them, and every replica computes the same map
from the same membership without talking to the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

#: Fixed for the life of a deployment (changing it moves every room): enough shards that
#: three replicas get near-equal shares, few enough that a tick renews them all in one query.
SHARDS: Final = 64


def _score(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def shard_of(key: str, shards: int = SHARDS) -> int:
    """The shard of a workqueue key."""
    return _score(key) % shards


def owner_of(shard: int, members: Iterable[str]) -> str | None:
    """The replica that should hold ``shard`` among ``members`` (``None`` when there are none)."""
    best: tuple[int, str] | None = None
    for member in members:
        candidate = (_score(f"{shard}|{member}"), member)
        if best is None or candidate > best:
            best = candidate
    return best[1] if best else None


def assignment(members: Iterable[str], shards: int = SHARDS) -> dict[int, str]:
    """Every shard's rightful owner among ``members`` (empty when there are none)."""
    live = sorted(set(members))
    if not live:
        return {}
    return {shard: owner for shard in range(shards) if (owner := owner_of(shard, live))}


def wanted_by(me: str, members: Iterable[str], shards: int = SHARDS) -> frozenset[int]:
    """The shards ``me`` should hold when ``members`` (with ``me``) are live."""
    live = {*members, me}
    return frozenset(s for s, owner in assignment(live, shards).items() if owner == me)
