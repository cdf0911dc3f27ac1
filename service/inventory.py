"""What the store holds, room by room: every room key, the channels rooms want, the sessions
nobody owns, how many sessions are live.

Shared by the controller (what to resync) and the commands (what to show), so that neither
imports the other.
"""

from __future__ import annotations

from reconcilers.engine import CHANNEL_PREFIX
from reconcilers.events import Store

LIVE_STATES = frozenset({"starting", "recording", "stopping"})


async def room_index(store: Store) -> tuple[list[str], dict[str, list[str]]]:
    """Every room key (deleted rooms too: they stop what they had), and the rooms that want
    something of each channel (not deleted): the ones a provider's event is for."""
    keys: list[str] = []
    by_channel: dict[str, list[str]] = {}
    after = ""
    while rows := await store.rows("rooms", after_key=after, limit=1000):
        after = rows[-1].key
        for r in rows:
            keys.append(r.key)
            if r.room and not r.data.get("deleted"):
                by_channel.setdefault(r.room, []).append(r.key)
    return keys, by_channel


async def all_keys(store: Store, room: str | None = None) -> list[str]:
    """Room keys to reconcile (one room, or all), plus channels with live sessions nobody owns."""
    if room is not None:
        return [room]
    keys, by_channel = await room_index(store)
    return keys + [CHANNEL_PREFIX + c for c in await orphan_channels(store, set(by_channel))]


async def orphan_channels(store: Store, mapped: set[str]) -> list[str]:
    """Channel keys of live sessions whose channel no room maps to."""
    found: set[str] = set()
    after = ""
    while rows := await store.rows("sessions", after_key=after, limit=1000):
        after = rows[-1].key
        for r in rows:
            if r.data.get("state") != "ended" and r.room and r.room not in mapped:
                found.add(r.room)
    return sorted(found)


async def live_sessions(store: Store) -> int:
    """Sessions the provider runs for us now: what the query budget must cover."""
    live, after = 0, ""
    while rows := await store.rows("sessions", after_key=after, limit=2000):
        after = rows[-1].key
        live += sum(1 for r in rows if r.data.get("state") in LIVE_STATES)
    return live
