"""The controller's event routing: a provider's event wakes the rooms on its channel (from an
in-memory index, kept up by the API's events and rebuilt by every resync), else the channel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from reconcilers.engine import CHANNEL_PREFIX, QueryRequest, Reconciler
from reconcilers.events import NewEvent, Row, Store
from reconcilers.projections import PROJECTIONS
from reconcilers.workqueue import Done
from service.controller import Controller, Stopping
from service.store import open_store


def desired(room: str, channel: str) -> NewEvent:
    tenant, name = room.split("/")
    spec = {"state": "recording", "provider": "agora", "channel": channel}
    payload = {"tenant": tenant, "name": name, "spec": spec, "channel_key": f"agora/{channel}"}
    return NewEvent("api", f"{room}|{channel}", "room.desired", payload, room=room,
                    occurred_at=datetime.now(UTC))


def controller_on(store: Store) -> Controller:
    """A controller whose reconciler is never run here: only its routing is under test."""
    reconciler = Reconciler(store, {}, lambda _: None)  # type: ignore[arg-type,return-value]
    return Controller(reconciler, CollectorRegistry(), rate_per_s=9)


async def test_provider_events_reach_the_rooms_that_want_their_channel(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'c.db'}", PROJECTIONS)
    try:
        controller = controller_on(store)
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


class _PausedRoomsScan:
    """A store whose scan of every room (the resync's snapshot) is read, then held back until
    released: the snapshot predates what happens meanwhile."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.scanning = asyncio.Event()
        self.release = asyncio.Event()
        self.began = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def rows(self, projection: str, room: str | None = None, **kw: Any) -> list[Row]:
        found = await self._store.rows(projection, room=room, **kw)
        if projection == "rooms" and room is None and not self.release.is_set():
            self.scanning.set()
            await self.release.wait()
        return found


async def test_a_room_declared_during_a_resync_is_not_lost_from_the_index(
    tmp_path: Path,
) -> None:
    """The resync's snapshot is read before the room exists and assigned after the API
    indexed it: the room must still wake on its channel's events (seen in the benchmark)."""
    store = await open_store(f"sqlite:///{tmp_path / 'c.db'}", PROJECTIONS)
    paused = _PausedRoomsScan(store)
    try:
        controller = controller_on(paused)  # type: ignore[arg-type]
        resync = asyncio.create_task(controller.resync())
        await paused.scanning.wait()
        declared = (await store.append(desired("acme/a", "standup"))).event
        controller.notify(declared)  # indexed now, while the snapshot is being read
        paused.release.set()
        await resync
        ping = (await store.append(NewEvent("agora", "n1", "x", {}, room="standup"))).event
        assert controller._known_keys(ping) == ["acme/a"]  # from memory, without the store
    finally:
        await store.close()


async def test_a_resync_wakes_only_the_keys_nothing_else_will(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'c.db'}", PROJECTIONS)
    try:
        controller = controller_on(store)
        for room, channel in (("acme/a", "standup"), ("acme/b", "lecture")):
            await store.append(desired(room, channel))
        controller.queue.add_after("acme/a", 60)  # a requeue pending: it runs anyway
        await controller.resync()
        assert controller.queue.get_nowait() == "acme/b"
        assert len(controller.queue) == 0 and controller.queue.next_due("acme/a") is not None
    finally:
        controller.queue.shutdown(drain=False)
        await store.close()


async def test_a_channel_no_room_wants_wakes_only_for_recorders_of_ours(tmp_path: Path) -> None:
    """An app's NCS reports on every channel it has; where no room wants the channel, joins,
    leaves and other tools' recorders change no plan (only recorders of ours are stopped there).
    A recorder of ours there still wakes the channel, and a join still wakes a room."""
    from reconcilers.providers.agora.notifications import parse_notification
    from service.webhooks.agora import to_event
    from tests.helpers import notification

    def rtc(notice: str, channel: str) -> NewEvent:
        body = {"noticeId": notice, "productId": 1, "eventType": 103, "notifyMs": 1,
                "payload": {"channelName": channel, "uid": 7, "clientSeq": 1, "ts": 1}}
        return to_event(parse_notification(body), body)

    store = await open_store(f"sqlite:///{tmp_path / 'c.db'}", PROJECTIONS)
    try:
        controller = controller_on(store)
        await store.append(desired("acme/a", "standup"))
        await controller.resync()
        joined = (await store.append(rtc("j1", "lobby"))).event
        keys = await controller.keys_for(joined)
        assert keys == [CHANNEL_PREFIX + "agora/lobby"]
        controller._wake(joined, keys)
        assert controller.queue.next_due(keys[0]) is None
        body = notification("r0", channel="lobby", uid="99", event_type=41,
                            details={"msgName": "recorder_leave", "leaveCode": 16})
        foreign = (await store.append(to_event(parse_notification(body), body))).event
        controller._wake(foreign, keys)
        assert controller.queue.next_due(keys[0]) is None
        body = {**body, "noticeId": "r1", "payload": {**body["payload"], "uid": "4000000001"}}
        recorder = (await store.append(to_event(parse_notification(body), body))).event
        controller._wake(recorder, keys)
        assert controller.queue.next_due(keys[0]) is not None
        in_room = (await store.append(rtc("j2", "standup"))).event
        controller._wake(in_room, await controller.keys_for(in_room))
        assert controller.queue.next_due("acme/a") is not None
    finally:
        await store.close()


class _Recording(Reconciler):
    """Passes and queries that note when they run, the first pass held until released."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, {}, lambda _: None)  # type: ignore[arg-type,return-value]
        self.trace: list[str] = []
        self.release = asyncio.Event()
        self.began = asyncio.Event()

    async def reconcile(self, key: str, config: Any = None, fence: Any = None) -> Any:
        self.trace.append(f"pass {key}")
        if self.trace.count(f"pass {key}") == 1:
            self.began.set()
            await self.release.wait()
        self.trace.append(f"end {key}")
        return await super().reconcile(key, config, fence)

    async def query(self, request: QueryRequest, fence: Any = None) -> Any:
        self.trace.append(f"query {request.key} {sorted(request.sids)}")
        return await super().query(request, fence)


async def test_run_key_queries_in_the_keys_own_worker_after_the_pass_in_flight(
    tmp_path: Path,
) -> None:
    """The recordings API's provider queries go through the workqueue: never beside a pass of
    the same key, and the caller gets the result of the pass that ran them."""
    store = await open_store(f"sqlite:///{tmp_path / 'c.db'}", PROJECTIONS)
    try:
        reconciler = _Recording(store)
        controller = Controller(reconciler, CollectorRegistry(), rate_per_s=9, workers=4)
        await controller.start()
        controller.enqueue("acme/a")
        await reconciler.began.wait()
        asked = controller.run_key("acme/a", QueryRequest("acme/a", "agora", ["s1"], "sync"))
        for _ in range(20):  # let the other workers take whatever they can
            await asyncio.sleep(0)
        assert reconciler.trace == ["pass acme/a"], "no second worker for the key"
        reconciler.release.set()
        result = await asked
        assert reconciler.trace[1:] == ["end acme/a", "query acme/a ['s1']", "pass acme/a",
                                        "end acme/a"]
        assert isinstance(result, Done)
        await controller.stop()
        refused = controller.run_key("acme/a")
        with pytest.raises(Stopping):
            await refused
    finally:
        await store.close()
