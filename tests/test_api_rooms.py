"""The desired-state API: auth, validation, generations, optimistic concurrency, idempotency,
listing, deletion, tenant scoping, and the controller acting on what the API declares."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from service.api.rooms import KeyedLocks
from tests.service_harness import Service, service

SPEC: dict[str, Any] = {
    "state": "recording",
    "mode": "mix",
    "options": {"recordingConfig": {"maxIdleTime": 30}},
}


async def put(svc: Service, room: str, body: Any, **headers: str) -> Any:
    return await svc.a.put(f"/v1/rooms/{room}/recording", json=body, headers=headers)


async def test_every_route_needs_a_valid_token(tmp_path: Path) -> None:
    async with service(tmp_path) as svc:
        for method, path in [
            ("GET", "/v1/rooms"),
            ("GET", "/v1/rooms/r/recording"),
            ("PUT", "/v1/rooms/r/recording"),
            ("DELETE", "/v1/rooms/r/recording"),
        ]:
            missing = await svc.anonymous.request(method, path, json=SPEC)
            wrong = await svc.anonymous.request(
                method, path, json=SPEC, headers={"Authorization": "Bearer nope"}
            )
            for response in (missing, wrong):
                assert response.status_code == 401, (method, path)
                assert response.json()["error"]["field"] == "Authorization"
        assert (await svc.a.get("/v1/rooms")).json()["items"] == []


async def test_put_creates_then_changes_with_generations_and_etags(tmp_path: Path) -> None:
    async with service(tmp_path) as svc:
        created = await put(svc, "standup", SPEC)
        assert created.status_code == 201
        assert created.headers["etag"] == '"1"'
        view = created.json()
        assert view["generation"] == 1 and view["spec"]["channel"] == "standup"
        assert {c["type"] for c in view["conditions"]} == {"Recording", "Progressing", "Degraded"}
        same = await put(svc, "standup", SPEC)
        assert same.status_code == 200 and same.json()["generation"] == 1
        changed = await put(svc, "standup", {**SPEC, "state": "stopped"})
        assert changed.status_code == 200 and changed.json()["generation"] == 2


async def test_if_match_guards_against_lost_updates(tmp_path: Path) -> None:
    async with service(tmp_path) as svc:
        await put(svc, "standup", SPEC)
        stale = await put(svc, "standup", {**SPEC, "state": "stopped"}, **{"If-Match": '"7"'})
        assert stale.status_code == 412
        assert stale.json()["error"]["field"] == "If-Match"
        assert (await svc.a.get("/v1/rooms/standup/recording")).json()["generation"] == 1
        fresh = await put(svc, "standup", {**SPEC, "state": "stopped"}, **{"If-Match": '"1"'})
        assert fresh.status_code == 200 and fresh.json()["generation"] == 2


async def test_idempotency_key_makes_a_retried_put_one_change(tmp_path: Path) -> None:
    async with service(tmp_path) as svc:
        await put(svc, "standup", SPEC)
        body = {**SPEC, "state": "stopped"}
        first = await put(svc, "standup", body, **{"Idempotency-Key": "k1"})
        again = await put(svc, "standup", body, **{"Idempotency-Key": "k1"})
        assert first.json()["generation"] == again.json()["generation"] == 2


async def test_bad_specs_are_422_naming_the_field_and_change_nothing(tmp_path: Path) -> None:
    async with service(tmp_path) as svc:
        cases: list[tuple[dict[str, Any], str]] = [
            ({**SPEC, "state": "paused"}, "state"),
            ({**SPEC, "mode": "stereo"}, "mode"),
            ({**SPEC, "storage": "nowhere"}, "storage"),
            ({**SPEC, "surprise": 1}, "surprise"),
            ({**SPEC, "options": {"token": "x"}}, "options"),
            ({**SPEC, "options": {"recordingFileConfig": {"avFileType": ["mp4"]}}}, "options"),
            ({**SPEC, "mode": "individual"}, "options"),  # subscribeUidGroup is required
        ]
        for body, field in cases:
            response = await put(svc, "standup", body)
            assert response.status_code == 422, body
            assert response.json()["error"]["field"].startswith(field), response.json()
        bad_json = await svc.a.put(
            "/v1/rooms/standup/recording",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert bad_json.status_code == 400 and bad_json.json()["error"]["field"] == "body"
        bad_room = await put(svc, "no spaces allowed", SPEC)
        assert bad_room.status_code == 422 and bad_room.json()["error"]["field"] == "room"
        assert (await svc.a.get("/v1/rooms/standup/recording")).status_code == 404
        assert (await svc.a.get("/v1/rooms")).json()["items"] == []


async def test_tenants_never_see_each_others_rooms(tmp_path: Path) -> None:
    async with service(tmp_path) as svc:
        await put(svc, "standup", SPEC)
        assert (await svc.b.get("/v1/rooms/standup/recording")).status_code == 404
        assert (await svc.b.delete("/v1/rooms/standup/recording")).status_code == 404
        assert (await svc.b.get("/v1/rooms")).json()["items"] == []
        assert [i["room"] for i in (await svc.a.get("/v1/rooms")).json()["items"]] == ["standup"]


async def test_a_channel_belongs_to_one_room(tmp_path: Path) -> None:
    async with service(tmp_path) as svc:
        await put(svc, "standup", SPEC)
        clash = await put(svc, "other", {**SPEC, "channel": "standup"})
        assert clash.status_code == 409 and clash.json()["error"]["field"] == "channel"


async def test_rooms_racing_for_one_channel_get_it_once(tmp_path: Path) -> None:
    async with service(tmp_path) as svc:
        answers = await asyncio.gather(
            *(put(svc, f"r{i}", {**SPEC, "channel": "lecture"}) for i in range(8))
        )
        assert sorted(a.status_code for a in answers) == [201] + [409] * 7


async def test_list_filters_and_pages(tmp_path: Path) -> None:
    async with service(tmp_path) as svc:
        for i in range(5):
            state = "recording" if i % 2 == 0 else "stopped"
            await put(svc, f"room{i}", {**SPEC, "state": state})
        page = (await svc.a.get("/v1/rooms", params={"limit": 2})).json()
        assert [i["room"] for i in page["items"]] == ["room0", "room1"]
        rest = (await svc.a.get("/v1/rooms", params={"cursor": page["next_cursor"]})).json()
        assert [i["room"] for i in rest["items"]] == ["room2", "room3", "room4"]
        stopped = (await svc.a.get("/v1/rooms", params={"state": "stopped"})).json()
        assert [i["room"] for i in stopped["items"]] == ["room1", "room3"]
        assert (await svc.a.get("/v1/rooms", params={"limit": 0})).status_code == 422


async def test_declared_room_records_and_delete_stops_it(tmp_path: Path) -> None:
    async with service(tmp_path) as svc:
        svc.emu.join("standup", 11)
        await put(svc, "standup", SPEC)

        async def recording() -> bool:
            svc.emu.advance(1)
            view = (await svc.a.get("/v1/rooms/standup/recording")).json()
            return any(
                c["type"] == "Recording" and c["status"] == "True" for c in view["conditions"]
            )

        await svc.until(recording, what="standup recording")
        assert len(svc.emu.tasks(cname="standup", live=True)) == 1
        assert (await svc.a.delete("/v1/rooms/standup/recording")).status_code == 204
        assert (await svc.a.get("/v1/rooms/standup/recording")).status_code == 404

        async def stopped() -> bool:
            svc.emu.advance(1)
            return not svc.emu.tasks(cname="standup", live=True)

        await svc.until(stopped, what="standup's recorder stopped after DELETE")
        assert len(svc.emu.tasks(cname="standup")) == 1, "one task in all: nothing doubled"


async def test_a_room_declared_through_v1_is_a_recording_in_the_catalog(tmp_path: Path) -> None:
    """One wish, whichever API expressed it: PUT opens a recording, stopping closes it."""
    async with service(tmp_path) as svc:
        await put(svc, "standup", SPEC)
        (listed,) = (await svc.a.get("/api/v1/recordings")).json()["data"]
        assert (listed["room_id"], listed["status"]) == ("standup", "recording")
        again = await svc.a.post("/api/v1/rooms/standup/recordings/start")
        assert again.status_code == 409, "already recording, whichever API started it"
        await put(svc, "standup", {**SPEC, "state": "stopped"})
        (closed,) = (await svc.a.get("/api/v1/recordings")).json()["data"]
        assert closed["id"] == listed["id"] and closed["status"] != "recording"
        await put(svc, "standup", SPEC)
        assert len((await svc.a.get("/api/v1/recordings")).json()["data"]) == 2
        assert (await svc.b.get("/api/v1/recordings")).json()["data"] == []


async def test_a_room_declared_on_a_channel_already_heard_of_heals_on_its_events(
    tmp_path: Path,
) -> None:
    """The channel's events came before the room (users joined first): the controller noted
    that no room wanted it. The API's declaration must reach the controller's index, or the
    room's own events wake nothing until the next resync (seen in the benchmark: 12 s heals)."""
    async with service(tmp_path, resync_interval_seconds=3600) as svc:
        svc.emu.join("standup", 11)
        await svc.emu.settle()  # the channel's events are in, for a channel nobody wants yet
        await put(svc, "standup", SPEC)

        async def recording() -> bool:
            svc.emu.advance(1)
            return any(t.status in (4, 5) for t in svc.emu.tasks(cname="standup", live=True))

        await svc.until(recording, what="standup recording")
        (first,) = svc.emu.tasks(cname="standup", live=True)
        svc.emu.kill(first.sid, failover=False)

        async def healed() -> bool:
            return any(t.sid != first.sid for t in svc.emu.tasks(cname="standup", live=True))

        await svc.until(healed, within=5.0, what="a replacement started on the exit event")


async def test_keyed_locks_serialise_one_key_and_let_others_run() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def hold(name: str, *keys: str, wait: bool = False) -> None:
        async with locks.hold(*keys):
            order.append(f"{name} in")
            if wait:
                inside.set()
                await release.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(hold("a", "room/1", "agora/x", wait=True))
    await inside.wait()
    same_channel = asyncio.create_task(hold("b", "room/2", "agora/x"))
    await hold("c", "room/3", "agora/y")  # nothing in common with "a": runs now
    assert order == ["a in", "c in", "c out"]
    release.set()
    await asyncio.gather(first, same_channel)
    assert order[3:] == ["a out", "b in", "b out"]
    assert len(locks) == 0  # nobody holds or waits: nothing kept


async def test_a_declaration_and_its_recording_are_one_event(tmp_path: Path) -> None:
    """The recording is opened by the wish's own event: one write, one dedup key, so the log
    never has one without the other."""
    async with service(tmp_path) as svc:
        await asyncio.gather(*(put(svc, f"r{i}", SPEC) for i in range(5)))
        log = await svc.app.state.context.store.read_log()
        for i in range(5):
            events = [e for e in log if e.room == f"acme/r{i}" and e.source == "api"]
            assert [e.type for e in events] == ["room.desired"]
            assert events[0].payload["catalog"]["open"]["recording_id"].startswith("rec_")


async def test_a_condition_filter_reads_the_conditions_index(tmp_path: Path) -> None:
    """``condition=`` pages through the rooms whose last pass found it true (each checked
    against its live view), not through every room's view."""
    async with service(tmp_path) as svc:
        svc.emu.join("standup", 11)
        await put(svc, "standup", SPEC)
        await put(svc, "quiet", {**SPEC, "state": "stopped"})

        async def listed() -> list[str]:
            svc.emu.advance(1)
            page = (await svc.a.get("/v1/rooms", params={"condition": "Recording"})).json()
            return [item["room"] for item in page["items"]]

        async def standup_listed() -> bool:
            return await listed() == ["standup"]

        await svc.until(standup_listed, what="standup listed as Recording")
        store = svc.app.state.context.store
        rows = await store.rows("room_conditions", room="Recording|acme")
        assert [r.data["room"] for r in rows] == ["acme/standup"]
        assert await store.rows("room_conditions", room="Recording|other") == []
        bad = await svc.a.get("/v1/rooms", params={"condition": "Sleepy"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "condition"
        assert (await svc.a.delete("/v1/rooms/standup/recording")).status_code == 204
        assert await listed() == []
        assert await store.rows("room_conditions", room="Recording|acme") == []
