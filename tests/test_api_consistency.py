"""What an independent audit broke in the two APIs (issue 21, bugs 1 and 2), as regressions:

1. a reused ``Idempotency-Key`` with another body made a phantom recording (the catalog's
   write had a dedup key of its own): now refused with 422, changing nothing;
2. a soft-deleted live recording made ``stop`` answer 404 *and* stop the room: now DELETE of a
   recording still recording is refused with 409, and a 404 has no side effect.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.catalog_harness import AUTH, bucket, catalog_app
from tests.e2e_harness import world

ROOM = "/v1/rooms/{}/recording"
START = "/api/v1/rooms/{}/recordings/start"
STOP = "/api/v1/rooms/{}/recordings/stop"
SPEC: dict[str, Any] = {"state": "recording", "options": {"recordingConfig": {"maxIdleTime": 30}}}


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with bucket() as endpoint:
        yield endpoint


async def test_a_reused_idempotency_key_with_another_body_is_refused(
    tmp_path: Path, s3: str
) -> None:
    async with world(tmp_path) as w, catalog_app(w.store, w.reconciler, s3) as cat:
        c = cat.client
        first = await c.put(ROOM.format("idem2"), json={**SPEC, "state": "stopped"},
                            headers={**AUTH, "Idempotency-Key": "k2"})
        assert first.status_code == 201 and first.json()["generation"] == 1
        before = len(await w.store.read_log())
        reused = await c.put(ROOM.format("idem2"), json=SPEC,
                             headers={**AUTH, "Idempotency-Key": "k2"})
        assert reused.status_code == 422
        assert reused.json()["error"]["field"] == "Idempotency-Key"
        assert len(await w.store.read_log()) == before, "a refused request writes nothing"
        listed = (await c.get("/api/v1/recordings", headers=AUTH)).json()
        assert listed["data"] == [], "no phantom recording"
        view = (await c.get(ROOM.format("idem2"), headers=AUTH)).json()
        assert view["spec"]["state"] == "stopped" and view["generation"] == 1
        # The same key with the same body is answered as the first time, and writes nothing.
        replay = await c.put(ROOM.format("idem2"), json={**SPEC, "state": "stopped"},
                             headers={**AUTH, "Idempotency-Key": "k2"})
        assert replay.status_code == 201 and replay.json()["generation"] == 1
        assert len(await w.store.read_log()) == before


async def test_a_key_first_spent_on_a_no_op_stays_spent(tmp_path: Path, s3: str) -> None:
    async with world(tmp_path) as w, catalog_app(w.store, w.reconciler, s3) as cat:
        c = cat.client
        await c.put(ROOM.format("r"), json=SPEC, headers=AUTH)
        same = await c.put(ROOM.format("r"), json=SPEC, headers={**AUTH, "Idempotency-Key": "n"})
        assert same.status_code == 200
        other = {**SPEC, "state": "stopped"}
        reused = await c.put(ROOM.format("r"), json=other, headers={**AUTH, "Idempotency-Key": "n"})
        assert reused.status_code == 422


async def test_recordings_start_replays_its_first_answer_for_the_same_key(
    tmp_path: Path, s3: str
) -> None:
    async with world(tmp_path) as w, catalog_app(w.store, w.reconciler, s3) as cat:
        c = cat.client
        key = {**AUTH, "Idempotency-Key": "s1"}
        first = await c.post(START.format("standup"), json={}, headers=key)
        assert first.status_code == 201
        again = await c.post(START.format("standup"), json={}, headers=key)
        assert again.status_code == 201 and again.json() == first.json()
        other = await c.post(START.format("standup"), json={"mode": "individual"}, headers=key)
        assert other.status_code == 422
        listed = (await c.get("/api/v1/recordings", headers=AUTH)).json()
        assert listed["meta"]["total"] == 1
        api_events = [e for e in await w.store.read_log() if e.source == "api"]
        assert [e.type for e in api_events] == ["room.desired"], "one write for wish + recording"


async def test_deleting_a_live_recording_is_refused_and_changes_nothing(
    tmp_path: Path, s3: str
) -> None:
    async with world(tmp_path) as w, catalog_app(w.store, w.reconciler, s3) as cat:
        c = cat.client
        w.emu.join("standup", 11)
        rid = (await c.post(START.format("standup"), json={}, headers=AUTH)).json()["data"]["id"]
        await w.run("acme/standup", passes=3)
        assert w.live_tasks("standup")
        before = len(await w.store.read_log())
        r = await c.delete(f"/api/v1/recordings/{rid}", headers=AUTH)
        assert r.status_code == 409 and "recording" in r.json()["error"]["message"]
        assert len(await w.store.read_log()) == before
        # Stop, then delete; a second stop is a 404 that changes nothing.
        assert (await c.post(STOP.format("standup"), headers=AUTH)).status_code == 200
        await w.run("acme/standup", passes=2)
        assert not w.live_tasks("standup")
        assert (await c.delete(f"/api/v1/recordings/{rid}", headers=AUTH)).status_code == 200
        before = len(await w.store.read_log())
        r = await c.post(STOP.format("standup"), headers=AUTH)
        assert r.status_code == 404
        assert len(await w.store.read_log()) == before, "a 404 has no side effect"
        # And the room can record again.
        again = await c.post(START.format("standup"), json={}, headers=AUTH)
        assert again.status_code == 201 and again.json()["data"]["id"] != rid
        await w.run("acme/standup", passes=3)
        assert w.live_tasks("standup")
