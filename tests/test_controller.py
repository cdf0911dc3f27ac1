"""The controller's event routing: a provider's event wakes the rooms on its channel (from an
in-memory index, kept up by the API's events and rebuilt by every resync), else the channel."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from reconcilers.engine import CHANNEL_PREFIX, Reconciler
from reconcilers.events import NewEvent
from reconcilers.projections import PROJECTIONS
from service.controller import Controller
from service.store import open_store


def desired(room: str, channel: str) -> NewEvent:
    tenant, name = room.split("/")
    spec = {"state": "recording", "provider": "agora", "channel": channel}
    payload = {"tenant": tenant, "name": name, "spec": spec, "channel_key": f"agora/{channel}"}
    return NewEvent("api", f"{room}|{channel}", "room.desired", payload, room=room,
                    occurred_at=datetime.now(UTC))


async def test_provider_events_reach_the_rooms_that_want_their_channel(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'c.db'}", PROJECTIONS)
    try:
        controller = Controller(
            Reconciler(store, {}, lambda _: None),  # type: ignore[arg-type,return-value]
            CollectorRegistry(),
            rate_per_s=9,
        )
        a = (await store.append(desired("acme/a", "standup"))).event
        await store.append(desired("acme/b", "lecture"))
        await controller.resync()  # the index from the store
        ping = (await store.append(NewEvent("agora", "n1", "x", {}, room="standup"))).event
        assert await controller.keys_for(ping) == ["acme/a"]
        assert await controller.keys_for(a) == ["acme/a"]

        moved = (await store.append(desired("acme/a", "townhall"))).event
        assert await controller.keys_for(moved) == ["acme/a"]  # the API's event moves the index
        assert await controller.keys_for(ping) == [CHANNEL_PREFIX + "agora/standup"]
        gone = (await store.append(
            NewEvent("api", "del-b", "room.deleted", {}, room="acme/b")
        )).event
        await controller.keys_for(gone)
        lecture = (await store.append(NewEvent("agora", "n2", "x", {}, room="lecture"))).event
        assert await controller.keys_for(lecture) == [CHANNEL_PREFIX + "agora/lecture"]

        # A room written by someone else (another process): found in the store, then indexed.
        await store.append(desired("acme/c", "seminar"))
        seminar = (await store.append(NewEvent("agora", "n3", "x", {}, room="seminar"))).event
        assert await controller.keys_for(seminar) == ["acme/c"]
        assert not [k for k in await controller.keys_for(ping) if not k.startswith(CHANNEL_PREFIX)]

        # A channel no room wants is asked of the store once, then remembered until the resync.
        await store.append(desired("acme/d", "standup"))  # by "another process" again
        assert await controller.keys_for(ping) == [CHANNEL_PREFIX + "agora/standup"]
        await controller.resync()
        assert await controller.keys_for(ping) == ["acme/d"]
    finally:
        await store.close()
