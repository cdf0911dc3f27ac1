"""The control API over HTTP: channels, tasks, kills, clock, faults, stats, callbacks."""

from __future__ import annotations

import httpx

from service.emulators.agora import AgoraEmulator

from .conftest import Agora


def control(emu: AgoraEmulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emu.app), base_url="http://agora.test/_emulator"
    )


async def test_users_join_change_role_and_leave(emu: AgoraEmulator) -> None:
    async with control(emu) as ctl:
        joined = await ctl.post("/channels/t1/room-a/users", json={"uid": 7, "role": "audience"})
        assert joined.status_code == 201
        member = joined.json()["members"][0]
        assert (member["uid"], member["profile"], member["role"]) == (7, "live", "audience")
        assert (member["publish"], member["recorder_sid"]) == (False, None)
        promoted = await ctl.put("/channels/t1/room-a/users/7", json={"role": "host"})
        assert promoted.json()["members"][0]["role"] == "host"
        twice = await ctl.post("/channels/t1/room-a/users", json={"uid": 7})
        assert twice.status_code == 409
        left = await ctl.delete("/channels/t1/room-a/users/7")
        assert left.json()["members"] == []
        missing = await ctl.delete("/channels/t1/room-a/users/7")
        assert missing.status_code == 404
        bad = await ctl.post("/channels/x/users", json={"uid": "seven"})
        assert bad.status_code == 400
        listed = await ctl.get("/channels")
        assert [c["cname"] for c in listed.json()] == ["t1/room-a"]


async def test_tasks_list_every_task_with_times(emu: AgoraEmulator, agora: Agora) -> None:
    async with control(emu) as ctl:
        await ctl.post("/channels/room/users", json={"uid": 7, "role": "host"})
        rid, sid = await agora.session("mix", uid="1")
        _, other = await agora.session("mix", uid="2")
        advanced = await ctl.post("/clock/advance", json={"seconds": 15})
        assert advanced.json()["fired"] > 0
        assert (await agora.stop(rid, sid, uid="1")).status_code == 200
        await ctl.post("/clock/advance", json={"seconds": 5, "settle": True})
        tasks = (await ctl.get("/tasks")).json()
        live = (await ctl.get("/tasks", params={"live": "true"})).json()
        one = (await ctl.get(f"/tasks/{sid}")).json()
    assert [t["sid"] for t in tasks] == [sid, other]
    assert [t["sid"] for t in live] == [other]
    assert one["started_at"] == 1_700_000_000.0  # the manual clock's fixed epoch
    assert one["ended_at"] == one["started_at"] + 17
    assert (one["exit_reason"], one["resource_id"], one["mode"]) == ("stopped", rid, "mix")
    assert one["files"][0]["name"] == f"{sid}_room.m3u8" and one["files"][0]["slices"] == 2


async def test_kill_through_http(emu: AgoraEmulator, agora: Agora) -> None:
    rid, sid = await agora.session("mix")
    async with control(emu) as ctl:
        killed = await ctl.post(f"/tasks/{sid}/kill", json={"failover": True, "window": 10})
        assert killed.json()["phase"] == "failover"
        assert (await agora.query(rid, sid)).status_code == 404
        await ctl.post("/clock/advance", json={"seconds": 10})
        assert (await agora.query(rid, sid)).status_code == 200
        dead = await ctl.post(f"/tasks/{sid}/kill", json={"failover": False})
        assert dead.json()["exit_reason"] == "killed"
        again = await ctl.post(f"/tasks/{sid}/kill", json={})
        assert again.status_code == 409
        unknown = await ctl.post("/tasks/nope/kill", json={})
        assert unknown.status_code == 404


async def test_faults_are_replaced_or_patched(emu: AgoraEmulator) -> None:
    async with control(emu) as ctl:
        put = await ctl.put("/faults", json={"error_rates": {"start": 0.2}, "latency": 0.01})
        assert put.json()["error_rates"] == {"start": 0.2}
        assert put.json()["latency"] == [0.01, 0.01]
        patched = await ctl.patch("/faults", json={"callback_drop_rate": 0.5})
        assert patched.json()["error_rates"] == {"start": 0.2}
        assert patched.json()["callback_drop_rate"] == 0.5
        bad = await ctl.put("/faults", json={"callback_drop_rate": 2})
        assert bad.status_code == 400
        assert (await ctl.get("/faults")).json()["callback_drop_rate"] == 0.5
    assert emu.fault_config.callback_drop_rate == 0.5


async def test_stats_count_requests_per_endpoint(emu: AgoraEmulator, agora: Agora) -> None:
    rid, sid = await agora.session("mix")
    await agora.query(rid, sid)
    await agora.http.get("/nowhere")
    async with control(emu) as ctl:
        stats = (await ctl.get("/stats")).json()
    assert stats["requests"] == {"acquire": 1, "start": 1, "query": 1, "unmatched": 1}
    assert stats["responses"]["query 200"] == 1
    assert stats["tasks"] == {"live": 1, "total": 1, "recording": 0}  # still starting
    assert stats["rate_limited"] == 0 and stats["max_qps"] == 4
    async with control(emu) as ctl:
        await ctl.post("/clock/advance", json={"seconds": 15})
        assert (await ctl.get("/stats")).json()["tasks"]["recording"] == 1


async def test_clock_can_be_read_and_sped_up(emu: AgoraEmulator) -> None:
    async with control(emu) as ctl:
        clock = (await ctl.get("/clock")).json()
        assert clock["manual"] is True and clock["speed"] == 0
        changed = await ctl.put("/clock", json={"speed": 50})
        assert changed.json()["speed"] == 50 and changed.json()["manual"] is False
        assert (await ctl.put("/clock", json={"speed": -1})).status_code == 400


async def test_callback_url_can_be_set_at_run_time(emu: AgoraEmulator) -> None:
    async with control(emu) as ctl:
        set_url = await ctl.put("/callbacks", json={"url": "http://127.0.0.1:9/ncs"})
        assert set_url.json() == {"url": "http://127.0.0.1:9/ncs", "rtc_url": None}
        log = (await ctl.get("/callbacks")).json()
        assert log == {"stats": {}, "deliveries": []}
        health = (await ctl.get("/health")).json()
        assert health["ok"] is True
        config = (await ctl.get("/config")).json()
        assert config["callback_url"] == "http://127.0.0.1:9/ncs"
