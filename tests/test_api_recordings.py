"""The recordings API's shapes (``docs/providers/recordings-api.md``), errors and tenant
isolation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconcilers.providers.agora.notifications import parse_notification
from service.webhooks.agora import to_event
from tests.catalog_harness import AUTH, OTHER, bucket, catalog_app
from tests.e2e_harness import world

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
START = "/api/v1/rooms/{}/recordings/start"
STOP = "/api/v1/rooms/{}/recordings/stop"
BODY = {"options": {"recordingConfig": {"maxIdleTime": 30}}}


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with bucket() as endpoint:
        yield endpoint


async def test_shapes_of_start_stop_list_get_and_errors(tmp_path: Path, s3: str) -> None:
    async with world(tmp_path) as w, catalog_app(w.store, w.reconciler, s3) as cat:
        c = cat.client
        r = await c.post(STOP.format("standup"), headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert (await c.post(START.format("standup"))).status_code == 401
        r = await c.post(START.format("standup"), json=BODY, headers=AUTH)
        d = r.json()["data"]
        assert set(d) == {"id", "room_id", "status", "started_at"} and ISO.match(d["started_at"])
        assert d["room_id"] == "standup" and d["status"] == "recording"
        rid = d["id"]
        r = await c.post(STOP.format("standup"), headers=AUTH)
        d = r.json()["data"]
        assert set(d) == {"id", "room_id", "status", "stopped_at"} and d["id"] == rid
        assert d["status"] == "failed", "no segment ever started: nothing was recorded"
        assert ISO.match(d["stopped_at"])
        await c.post(START.format("standup"), headers=AUTH)  # a second recording of the room
        listed = (await c.get("/api/v1/recordings?limit=1&offset=0", headers=AUTH)).json()
        assert listed["meta"] == {"total": 2, "limit": 1, "offset": 0}
        (item,) = listed["data"]
        assert set(item) == {"id", "room_id", "status", "duration_seconds", "size_bytes",
                             "created_at"}
        assert item["status"] == "recording", "newest first"
        got = (await c.get(f"/api/v1/recordings/{rid}", headers=AUTH)).json()["data"]
        assert set(got) == {"id", "room_id", "room", "status", "duration_seconds", "size_bytes",
                            "started_at", "stopped_at"}
        bad = await c.get("/api/v1/recordings?limit=0", headers=AUTH)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "limit"
        r = await c.post(f"/api/v1/recordings/{rid}/archive", headers=AUTH)
        assert r.status_code == 400 and r.json()["error"]["code"] == "not_ready"


async def test_another_tenant_sees_nothing(tmp_path: Path, s3: str) -> None:
    async with world(tmp_path) as w, catalog_app(w.store, w.reconciler, s3) as cat:
        c = cat.client
        rid = (await c.post(START.format("standup"), json=BODY, headers=AUTH)).json()["data"]["id"]
        assert (await c.get("/api/v1/recordings", headers=OTHER)).json()["data"] == []
        for method, path in [("GET", ""), ("GET", "/download"), ("POST", "/archive"),
                             ("POST", "/recover"), ("DELETE", "")]:
            r = await c.request(method, f"/api/v1/recordings/{rid}{path}", headers=OTHER)
            assert r.status_code == 404, (method, path)
        assert (await c.post(STOP.format("standup"), headers=OTHER)).status_code == 404
        assert (await c.get(f"/api/v1/recordings/{rid}", headers=AUTH)).status_code == 200


async def test_recover_fails_a_recording_whose_files_never_arrived(tmp_path: Path, s3: str) -> None:
    async with world(tmp_path) as w, catalog_app(w.store, w.reconciler, s3) as cat:
        c = cat.client
        w.emu.join("standup", 11)
        rid = (await c.post(START.format("standup"), json=BODY, headers=AUTH)).json()["data"]["id"]
        r = await c.post(f"/api/v1/recordings/{rid}/recover", headers=AUTH)
        assert r.status_code == 400 and r.json()["error"]["code"] == "not_recoverable"
        await w.run("acme/standup", passes=4)
        await w.tick(30)
        await c.post(STOP.format("standup"), headers=AUTH)
        await w.run("acme/standup", passes=3)
        r = await c.post(f"/api/v1/recordings/{rid}/recover", headers=AUTH)
        d = r.json()["data"]
        assert set(d) == {"id", "status", "message"} and d["message"].startswith("Recovery")
        assert d["status"] == "failed"
        # The message agrees with the status: nothing is "initiated" for a failed recording.
        assert "reprocessed" not in d["message"] and "failed" in d["message"]
        log = [e.type for e in await w.store.read_log()]
        assert "storage.checked" in log and "recording.failed" in log


async def test_sync_imports_a_session_the_provider_started_by_itself(
    tmp_path: Path, s3: str
) -> None:
    async with world(tmp_path) as w, catalog_app(w.store, w.reconciler, s3) as cat:
        body = {"noticeId": "foreign-1", "productId": 3, "eventType": 40, "notifyMs": 1,
                "payload": {"cname": "standup", "uid": "123", "sid": "foreign", "sequence": 0,
                            "sendts": 1_767_695_400_000, "details": {"msgName": "recorder_started",
                                                                     "status": 0}}}
        await w.store.append(to_event(parse_notification(body), body))
        path = "/api/v1/rooms/standup/recordings/sync"
        missing = await cat.client.post(path, headers=AUTH)
        assert missing.status_code == 404, "sync imports into a room of the caller's"
        api = cat.api.rooms
        await api.declare("acme", "standup", api.spec_from({"state": "stopped"}, "standup"))
        r = (await cat.client.post(path, headers=AUTH)).json()["data"]
        assert r["synced_count"] == 1 and set(r["recordings"][0]) == {"id", "status"}
        again = (await cat.client.post(path, headers=AUTH)).json()["data"]
        assert again == {"synced_count": 0, "recordings": []}
        listed = (await cat.client.get("/api/v1/recordings", headers=AUTH)).json()
        assert listed["meta"]["total"] == 1


def foreign_recorder(channel: str, uid: str, sid: str) -> dict[str, object]:
    """A recorder_started notification, as Agora sends it for a task on ``channel``."""
    return {"noticeId": f"n-{sid}", "productId": 3, "eventType": 40, "notifyMs": 1,
            "payload": {"cname": channel, "uid": uid, "sid": sid, "sequence": 0,
                        "sendts": 1_767_695_400_000,
                        "details": {"msgName": "recorder_started", "status": 0}}}


async def test_sync_imports_only_what_the_callers_tenant_owns(tmp_path: Path, s3: str) -> None:
    """Issue 20, High 2: globex, who has no room "standup", synced it and imported a recorder
    running on acme's channel (and once its files landed, downloaded them). Sync needs a room
    of the caller's own, and imports from that room's channel only."""
    async with world(tmp_path) as w, catalog_app(w.store, w.reconciler, s3) as cat:
        c = cat.client
        await c.post(START.format("standup"), json=BODY, headers=AUTH)  # acme's channel
        body = foreign_recorder("standup", "123", "foreign")
        await w.store.append(to_event(parse_notification(body), body))
        path = "/api/v1/rooms/standup/recordings/sync"
        r = await c.post(path, headers=OTHER)
        assert r.status_code == 404 and r.json()["error"]["field"] == "room", r.text
        assert (await c.get("/api/v1/recordings", headers=OTHER)).json()["data"] == []
        mine = (await c.post(path, headers=AUTH)).json()["data"]
        assert mine["synced_count"] == 1, "the room's owner imports it"


async def test_sync_never_imports_a_recorder_of_ours_waiting_to_be_adopted(
    tmp_path: Path, s3: str
) -> None:
    """Issue 20, High 2: when a start's answer was lost, acme's own recorder (known only from
    its notifications) was imported by a sync, into another tenant's catalog. A recorder with
    one of the reconciler's uids is the reconciler's: it is adopted, never imported."""
    from service.emulators.agora import FaultConfig

    async with world(tmp_path) as w, catalog_app(w.store, w.reconciler, s3) as cat:
        c = cat.client
        w.emu.join("standup", 11)
        await c.post(START.format("standup"), json=BODY, headers=AUTH)
        w.emu.set_faults(FaultConfig(timeout_rates={"start": 1.0}, hang_seconds=0,
                                     side_effect_rate=1.0))
        await w.reconciler.reconcile("acme/standup")  # the start lands, its answer is lost
        w.emu.set_faults(FaultConfig(side_effect_rate=0.0))
        await w.tick(1)
        (row,) = await w.store.rows("sessions", room="agora/standup")
        assert not row.data.get("room"), "known from its notifications only"
        path = "/api/v1/rooms/standup/recordings/sync"
        assert (await c.post(path, headers=OTHER)).status_code == 404
        mine = (await c.post(path, headers=AUTH)).json()["data"]
        assert mine == {"synced_count": 0, "recordings": []}, "the reconciler adopts it"
        await w.run("acme/standup", passes=2)
        listed = (await c.get("/api/v1/recordings", headers=AUTH)).json()
        assert listed["meta"]["total"] == 1, "one recording: the one the start opened"
