"""A task's life on the emulated clock: startup, recording, idle exit, failover, death."""

from __future__ import annotations

from typing import Any

from service.emulators.agora import AgoraEmulator, FaultConfig

from .conftest import RECEIVER_URL, Agora, Receiver, manual, running, start_request


def details(receiver: Receiver, event: int) -> list[dict[str, Any]]:
    return [p["payload"]["details"] for p in receiver.recording() if p["eventType"] == event]


async def test_status_climbs_to_4_then_5_after_the_first_slice() -> None:
    async with running(manual(startup_seconds=2.0, slice_seconds=4.0)) as (emu, agora):
        emu.join("room", 7, "host")
        rid, sid = await agora.session("mix")
        seen = []
        for _ in range(8):
            seen.append((await agora.query(rid, sid)).json()["serverResponse"]["status"])
            emu.advance(0.5)
        assert seen == [0, 1, 2, 3, 4, 4, 4, 4]
        emu.advance(2.5)
        assert (await agora.query(rid, sid)).json()["serverResponse"]["status"] == 5


async def test_files_grow_with_published_time(emu: AgoraEmulator, agora: Agora) -> None:
    rid, sid = await agora.session("individual")
    emu.advance(5)
    assert (await agora.query(rid, sid, "individual")).json()["serverResponse"]["fileList"] == []
    emu.join("room", 7, "host")
    emu.advance(35)
    files = emu.task(sid).files
    assert {f.name.rsplit("__", 1)[1] for f in files} == {"uid_e_audio.m3u8", "uid_e_video.m3u8"}
    assert [f.slices for f in files] == [3, 3]
    emu.join("room", 8, "host")
    emu.advance(10)
    listed = (await agora.query(rid, sid, "individual")).json()["serverResponse"]["fileList"]
    assert sorted({f["uid"] for f in listed}) == ["7", "8"]
    assert [f.slices for f in emu.task(sid).files] == [4, 4, 1, 1]


async def test_an_empty_channel_ends_the_task_after_max_idle_time(receiver: Receiver) -> None:
    config = manual(callback_url=RECEIVER_URL, rtc_events=False)
    async with running(config, receiver) as (emu, agora):
        emu.join("room", 7, "host")
        rid, sid = await agora.session("mix")
        emu.advance(20)
        emu.leave("room", 7)
        emu.advance(29)
        assert (await agora.query(rid, sid)).status_code == 200
        emu.join("room", 7, "host")  # a rejoin cancels the countdown
        emu.advance(60)
        emu.leave("room", 7)
        emu.advance(30)
        stop = await agora.stop(rid, sid)
        assert (stop.status_code, stop.json()["code"]) == (400, 49)
        emu.advance(emu.config.exit_seconds)
        assert (await agora.query(rid, sid)).status_code == 404
        await emu.settle()
    assert details(receiver, 41) == [{"msgName": "recorder_leave", "leaveCode": 4}]
    assert details(receiver, 11) == [{"msgName": "session_exit", "exitStatus": 0}]
    uploaded = details(receiver, 31)
    assert uploaded and uploaded[0]["fileList"][0]["fileName"] == f"{sid}_room.m3u8"
    events = receiver.events()
    assert events.index(41) < events.index(31) < events.index(11)
    record = emu.task(sid)
    assert record.exit_reason == "idle" and record.ended_at == record.started_at + 139 + 2


async def test_in_live_only_hosts_keep_the_recorder_busy(emu: AgoraEmulator, agora: Agora) -> None:
    emu.join("room", 7, "audience")
    rid, sid = await agora.session("mix")
    emu.advance(30.5)
    assert (await agora.query(rid, sid)).status_code == 200  # joined at t=1, idle from then
    emu.advance(0.5)
    assert emu.task(sid).phase == "exiting"


async def test_a_recorder_with_the_wrong_channel_type_sees_nobody(
    emu: AgoraEmulator, agora: Agora
) -> None:
    emu.join("room", 7, profile="communication")
    communication = start_request("mix", recordingConfig={"channelType": 0, "maxIdleTime": 10})
    live = start_request("mix", recordingConfig={"channelType": 1, "maxIdleTime": 10})
    _, good = await agora.session("mix", uid="1", client_request=communication)
    _, blind = await agora.session("mix", uid="2", client_request=live)
    emu.advance(20)
    assert emu.task(good).phase == "running" and emu.task(good).files
    assert emu.task(blind).phase != "running" and not emu.task(blind).files


async def test_recorders_do_not_count_as_users(emu: AgoraEmulator, agora: Agora) -> None:
    await agora.session("mix", uid="1")
    await agora.session("mix", uid="2")
    emu.advance(32)
    assert [t.exit_reason for t in emu.tasks()] == ["idle", "idle"]


async def test_web_recording_ends_at_max_recording_hour(receiver: Receiver) -> None:
    async with running(manual(callback_url=RECEIVER_URL), receiver) as (emu, agora):
        rid, sid = await agora.session("web")
        emu.advance(3599)
        assert (await agora.query(rid, sid, "web")).status_code == 200
        emu.advance(1 + emu.config.exit_seconds)
        assert (await agora.query(rid, sid, "web")).status_code == 404
        await emu.settle()
    stopped = details(receiver, 71)
    assert stopped[0]["code"] == 1 and stopped[0]["message"] == "max_recording_hour"
    assert stopped[0]["fileList"][0]["filename"] == f"{sid}_room.m3u8"
    assert 70 in receiver.events() and 40 not in receiver.events()
    assert emu.task(sid).exit_reason == "max_recording_hour"


async def test_failover_hides_the_task_then_brings_it_back_with_bak_files(
    receiver: Receiver,
) -> None:
    async with running(manual(callback_url=RECEIVER_URL), receiver) as (emu, agora):
        emu.join("room", 7, "host")
        request = start_request("mix", recordingFileConfig={"avFileType": ["hls", "mp4"]})
        rid, sid = await agora.session("mix", client_request=request)
        emu.advance(20)
        emu.kill(sid, failover=True)
        for _ in range(3):
            assert (await agora.query(rid, sid)).status_code == 404
            assert (await agora.stop(rid, sid)).status_code == 404
            emu.advance(9)
        emu.advance(3 + 20)
        back = await agora.query(rid, sid)
        assert back.status_code == 200
        names = [f["fileName"] for f in back.json()["serverResponse"]["fileList"]]
        assert names == [f"{sid}_room.m3u8", f"bak0_{sid}_room.m3u8"]
        await emu.settle()
    failover = details(receiver, 12)
    assert len(failover) == 1
    new_uid = failover[0]["newUid"]
    assert new_uid != 1001
    after = [p for p in receiver.recording() if p["eventType"] == 40][-1]["payload"]
    assert after["uid"] == str(new_uid) and after["sid"] == sid
    assert details(receiver, 1)[0]["errorLevel"] == 5
    record = emu.task(sid)
    assert record.failovers == 1 and record.recorder_uid == new_uid


async def test_at_most_three_failovers(emu: AgoraEmulator, agora: Agora) -> None:
    emu.join("room", 7, "host")
    rid, sid = await agora.session("mix")
    emu.advance(5)
    for n in range(3):
        emu.kill(sid, failover=True, window=60)
        emu.advance(60)
        assert (await agora.query(rid, sid)).status_code == 200
        emu.advance(10)
        assert emu.task(sid).files[-1].name.startswith(f"bak{n}_")
    emu.kill(sid, failover=True)
    emu.advance(600)
    assert (await agora.query(rid, sid)).status_code == 404
    record = emu.task(sid)
    assert (record.failovers, record.exit_reason, record.status) == (3, "failover_exhausted", 20)


async def test_a_killed_task_without_failover_is_gone_for_good(receiver: Receiver) -> None:
    async with running(manual(callback_url=RECEIVER_URL), receiver) as (emu, agora):
        emu.join("room", 7, "host")
        rid, sid = await agora.session("mix")
        emu.advance(5)
        emu.kill(sid, failover=False)
        emu.advance(3600)
        assert (await agora.query(rid, sid)).status_code == 404
        await emu.settle()
    assert details(receiver, 11) == [{"msgName": "session_exit", "exitStatus": 1}]
    assert details(receiver, 1)[0]["errorLevel"] == 5
    record = emu.task(sid)
    assert (record.status, record.exit_reason, record.live) == (20, "killed", False)


async def test_a_missing_token_fails_the_join_with_110(receiver: Receiver) -> None:
    config = manual(callback_url=RECEIVER_URL, app_certificate="cert")
    async with running(config, receiver) as (emu, agora):
        emu.join("room", 7, "host")
        rid, sid = await agora.session("mix")
        assert (await agora.query(rid, sid)).status_code == 200
        emu.advance(2)
        assert (await agora.query(rid, sid)).status_code == 404
        with_token = start_request("mix", token="007eJxTYLh")
        rid2, sid2 = await agora.session("mix", uid="2", client_request=with_token)
        emu.advance(2)
        assert (await agora.query(rid2, sid2)).status_code == 200
        await emu.settle()
    assert details(receiver, 1)[0]["errorCode"] == 110
    assert details(receiver, 41)[0]["leaveCode"] == 0
    assert emu.task(sid).exit_reason == "token_invalid"


async def test_an_expired_token_fault_fails_the_join_with_109(
    emu: AgoraEmulator, agora: Agora
) -> None:
    emu.set_faults(FaultConfig(token_expired_rate=1.0))
    _, sid = await agora.session("mix")
    emu.advance(2)
    assert emu.task(sid).exit_reason == "token_expired"


async def test_a_user_with_the_recorders_uid_kicks_it_out(emu: AgoraEmulator, agora: Agora) -> None:
    emu.join("room", 7, "host")
    rid, sid = await agora.session("mix", uid="9")
    emu.advance(5)
    emu.join("room", 9, "host")
    assert (await agora.query(rid, sid)).status_code == 404
    assert emu.task(sid).exit_reason == "uid_conflict"
    assert 9 in {m["uid"] for m in emu.channel("room")["members"]}


async def test_channel_events_and_the_recorders_own_join(receiver: Receiver) -> None:
    async with running(manual(callback_url=RECEIVER_URL), receiver) as (emu, agora):
        emu.join("room", 7, "host")
        emu.join("room", 8, "audience")
        emu.set_role("room", 8, "host")
        rid, sid = await agora.session("mix")
        emu.advance(5)
        emu.leave("room", 7)
        await agora.stop(rid, sid)
        emu.advance(5)
        emu.leave("room", 8)
        await emu.settle()
    rtc = [r.json for r in receiver.requests if r.json["productId"] == 1]
    assert [e["eventType"] for e in rtc] == [101, 103, 105, 111, 105, 104, 106, 104, 102]
    recorder_join = rtc[4]["payload"]
    assert (recorder_join["uid"], recorder_join["platform"]) == (1001, 6)
    assert recorder_join["clientType"] == 10
    user8 = [e["payload"]["clientSeq"] for e in rtc if e["payload"].get("uid") == 8]
    assert user8 == sorted(set(user8))
    assert rtc[-1]["payload"]["lastUid"] == 8
    assert rtc[5]["payload"]["reason"] == 1 and rtc[5]["payload"]["duration"] == 5


async def test_uploading_progress_is_reported_periodically(receiver: Receiver) -> None:
    config = manual(callback_url=RECEIVER_URL, progress_interval=60.0, rtc_events=False)
    async with running(config, receiver) as (emu, agora):
        emu.join("room", 7, "host")
        await agora.session("mix")
        emu.advance(181)
        await emu.settle()
    progress = [d["progress"] for d in details(receiver, 33)]
    assert len(progress) == 3 and all(0 < p <= 10000 for p in progress)
