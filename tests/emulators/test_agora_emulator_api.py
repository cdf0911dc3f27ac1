"""The REST surface: routes, auth, validation, resource rules and per-mode response shapes."""

from __future__ import annotations

import re

import httpx

from service.emulators.agora import AgoraEmulator

from .conftest import APP_ID, BASE, STORAGE, Agora, agora_client, manual, running, start_request

HEX32 = re.compile(r"^[0-9a-f]{32}$")


async def test_acquire_returns_a_resource_for_the_channel_and_uid(agora: Agora) -> None:
    response = await agora.acquire("room", "527841")
    assert response.status_code == 200
    body = response.json()
    assert body["cname"] == "room" and body["uid"] == "527841"
    assert len(body["resourceId"]) > 40


async def test_start_returns_a_32_hex_sid(agora: Agora) -> None:
    rid = (await agora.acquire()).json()["resourceId"]
    response = await agora.start(rid, "mix")
    assert response.status_code == 200
    body = response.json()
    assert HEX32.match(body["sid"])
    assert body == {"cname": "room", "uid": "1001", "resourceId": rid, "sid": body["sid"]}


async def test_missing_and_wrong_credentials_get_the_documented_401s(emu: AgoraEmulator) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emu.app), base_url="http://agora.test"
    ) as client:
        body = {"cname": "room", "uid": "1", "clientRequest": {}}
        missing = await client.post(f"{BASE}/acquire", json=body)
        wrong = await client.post(f"{BASE}/acquire", json=body, auth=("emulator-key", "nope"))
        other_app = await client.post(
            "/v1/apps/another-app/cloud_recording/acquire", json=body, auth=("emulator-key", "x")
        )
    assert (missing.status_code, missing.json()) == (401, {"message": "Unauthorized"})
    assert wrong.status_code == 401
    assert wrong.json() == {"message": "Invalid authentication credentials"}
    assert other_app.status_code == 401


async def test_credentials_for_another_app_id_are_rejected(agora: Agora) -> None:
    body = {"cname": "room", "uid": "1", "clientRequest": {}}
    response = await agora.http.post("/v1/apps/other/cloud_recording/acquire", json=body)
    assert response.status_code == 401


async def test_unknown_routes_and_methods_get_kongs_404(agora: Agora) -> None:
    expected = {"message": "no Route matched with those values"}
    for response in (
        await agora.http.get(f"{BASE}/acquire"),
        await agora.http.post(f"/v1/apps/{APP_ID}/cloudrecording/acquire", json={}),
        await agora.http.delete("/"),
    ):
        assert (response.status_code, response.json()) == (404, expected)


async def test_body_must_be_a_json_object(agora: Agora) -> None:
    text = await agora.http.post(
        f"{BASE}/acquire", content=b"cname=room", headers={"content-type": "text/plain"}
    )
    broken = await agora.http.post(
        f"{BASE}/acquire", content=b"{", headers={"content-type": "application/json"}
    )
    array = await agora.http.post(f"{BASE}/acquire", json=[1])
    for response in (text, broken, array):
        assert response.status_code == 400 and response.json()["code"] == 8


async def test_invalid_parameters_are_code_2_with_a_reason(agora: Agora) -> None:
    no_cname = await agora.http.post(f"{BASE}/acquire", json={"uid": "1", "clientRequest": {}})
    numeric_uid = await agora.http.post(
        f"{BASE}/acquire", json={"cname": "r", "uid": 1, "clientRequest": {}}
    )
    bad_hours = await agora.acquire(resourceExpiredHour=721)
    assert no_cname.json() == {"code": 2, "reason": "Acquire: cname is required!"}
    assert numeric_uid.json()["code"] == 2
    assert bad_hours.status_code == 400
    assert bad_hours.json() == {"code": 2, "reason": "Acquire: invalid resourceExpiredHour value!"}


async def test_start_validation_follows_the_documented_rules(agora: Agora) -> None:
    cases = {
        "Start: storageConfig is required!": ("mix", {"recordingConfig": {}}),
        "Start: invalid avFileType value!": (
            "mix",
            start_request("mix", recordingFileConfig={"avFileType": ["mp4"]}),
        ),
        "Start: subscribeUidGroup is required!": (
            "individual",
            {"storageConfig": STORAGE, "recordingConfig": {"channelType": 1}},
        ),
        "Start: subscribeAudioUids and unsubscribeAudioUids cannot both be set!": (
            "mix",
            {
                "storageConfig": STORAGE,
                "recordingConfig": {"subscribeAudioUids": ["1"], "unsubscribeAudioUids": ["2"]},
            },
        ),
        "Start: invalid maxIdleTime value!": (
            "mix",
            {"storageConfig": STORAGE, "recordingConfig": {"maxIdleTime": 1}},
        ),
        "Start: maxRecordingHour is required!": (
            "web",
            {
                "storageConfig": STORAGE,
                "extensionServiceConfig": {
                    "extensionServices": [
                        {
                            "serviceName": "web_recorder_service",
                            "serviceParam": {"url": "https://x"},
                        }
                    ]
                },
            },
        ),
    }
    for expected, (mode, request) in cases.items():
        rid = (await agora.acquire(scene=int(mode == "web"))).json()["resourceId"]
        response = await agora.start(rid, mode, client_request=request)
        assert response.status_code == 400, expected
        assert response.json()["code"] == 2
        assert response.json()["reason"] == expected


async def test_web_mode_needs_a_scene_1_resource(agora: Agora) -> None:
    rid = (await agora.acquire()).json()["resourceId"]
    response = await agora.start(rid, "web")
    assert response.status_code == 400
    assert response.json()["reason"] == "Start: scene does not match mode!"


async def test_a_resource_serves_one_start_only(agora: Agora) -> None:
    rid = (await agora.acquire()).json()["resourceId"]
    first = await agora.start(rid)
    again = await agora.start(rid)
    assert first.status_code == 200
    assert again.status_code == 201
    assert again.json()["code"] == 7


async def test_resource_expires_five_minutes_after_acquire(
    emu: AgoraEmulator, agora: Agora
) -> None:
    fresh = (await agora.acquire("a")).json()["resourceId"]
    stale = (await agora.acquire("b")).json()["resourceId"]
    emu.advance(299)
    assert (await agora.start(fresh, cname="a")).status_code == 200
    emu.advance(2)
    expired = await agora.start(stale, cname="b")
    assert expired.status_code == 400
    assert expired.json()["code"] == 433


async def test_a_resource_is_bound_to_its_channel_and_uid(agora: Agora) -> None:
    rid = (await agora.acquire("room", "1001")).json()["resourceId"]
    other_uid = await agora.start(rid, uid="1002")
    other_channel = await agora.start(rid, cname="elsewhere")
    assert other_uid.json()["code"] == 432 and other_channel.json()["code"] == 432
    forged = await agora.start(rid[:-4] + "AAAA")
    assert forged.json()["code"] == 1001


async def test_one_task_per_channel_and_uid(emu: AgoraEmulator, agora: Agora) -> None:
    rid, sid = await agora.session("mix", "room", "1001")
    second = (await agora.acquire("room", "1001")).json()["resourceId"]
    conflict = await agora.start(second, cname="room", uid="1001")
    assert (conflict.status_code, conflict.json()["code"]) == (400, 53)
    other_uid = (await agora.acquire("room", "1002")).json()["resourceId"]
    assert (await agora.start(other_uid, uid="1002")).status_code == 200
    await agora.stop(rid, sid)
    emu.advance(5)
    third = (await agora.acquire("room", "1001")).json()["resourceId"]
    assert (await agora.start(third)).status_code == 200


async def test_start_parameter_must_match_the_start_body(agora: Agora) -> None:
    request = start_request("mix")
    rid = (await agora.acquire(startParameter={"storageConfig": STORAGE})).json()["resourceId"]
    assert (await agora.start(rid, client_request=request)).status_code == 200
    other = dict(request, storageConfig={**STORAGE, "bucket": "other"})
    rid2 = (await agora.acquire(uid="7", startParameter={"storageConfig": STORAGE})).json()
    mismatch = await agora.start(rid2["resourceId"], uid="7", client_request=other)
    assert mismatch.status_code == 400
    assert "startParameter" in mismatch.json()["reason"]


async def test_acquire_and_start_refuse_work_over_the_concurrency_quota() -> None:
    async with running(manual(max_concurrent_tasks=2)) as (_, agora):
        await agora.session(uid="1")
        spare = (await agora.acquire(uid="2")).json()["resourceId"]
        await agora.session(uid="3")
        over = await agora.acquire(uid="4")
        assert (over.status_code, over.json()) == (400, {"code": 406, "reason": "vendor_over_load"})
        late = await agora.start(spare, uid="2")
        assert late.json()["code"] == 406


async def test_requests_above_the_qps_limit_get_429() -> None:
    async with running(manual(qps_limit=3)) as (emu, agora):
        statuses = [(await agora.acquire(uid=str(i))).status_code for i in range(1, 6)]
        assert statuses == [200, 200, 200, 429, 429]
        limited = await agora.acquire(uid="9")
        assert limited.json() == {"message": "API rate limit exceeded"}
        emu.advance(1)
        assert (await agora.acquire(uid="10")).status_code == 200
        stats = emu.stats_json()
        assert stats["rate_limited"] == 3
        assert stats["max_qps"] == 6 and stats["max_accepted_qps"] == 3


async def test_query_shape_per_mode(emu: AgoraEmulator, agora: Agora) -> None:
    emu.join("room", 7, "host")
    hls_mp4 = start_request("mix", recordingFileConfig={"avFileType": ["hls", "mp4"]})
    snapshot = start_request(
        "individual", snapshotConfig={"captureInterval": 5, "fileType": ["jpg"]}
    )
    sessions = {
        "individual": await agora.session("individual", uid="1"),
        "mix": await agora.session("mix", uid="2"),
        "mix+mp4": await agora.session("mix", uid="3", client_request=hls_mp4),
        "web": await agora.session("web", uid="4"),
        "snapshot": await agora.session("individual", uid="5", client_request=snapshot),
    }
    emu.advance(30)
    shapes = {}
    for name, (rid, sid) in sessions.items():
        mode = name.split("+")[0] if name != "snapshot" else "individual"
        response = await agora.query(rid, sid, mode)
        assert response.status_code == 200, name
        shapes[name] = response.json()["serverResponse"]
    assert shapes["individual"]["fileListMode"] == "json"
    assert {f["trackType"] for f in shapes["individual"]["fileList"]} == {"audio", "video"}
    assert all(f["uid"] == "7" for f in shapes["individual"]["fileList"])
    assert shapes["mix"]["fileListMode"] == "string"
    assert shapes["mix"]["fileList"].endswith("_room.m3u8")
    assert shapes["mix+mp4"]["fileListMode"] == "json"
    assert shapes["mix+mp4"]["fileList"][0]["mixedAllUser"] is True
    web = shapes["web"]["extensionServiceState"][0]
    assert web["serviceName"] == "web_recorder_service"
    assert web["payload"]["state"] == "inProgress" and web["payload"]["fileList"]
    assert set(shapes["snapshot"]) == {"status", "sliceStartTime"}
    for shape in shapes.values():
        assert shape["status"] == 5


async def test_sync_stop_reports_uploaded_files(emu: AgoraEmulator, agora: Agora) -> None:
    emu.join("room", 7, "host")
    request = start_request("mix", recordingFileConfig={"avFileType": ["hls", "mp4"]})
    rid, sid = await agora.session("mix", client_request=request)
    emu.advance(25)
    response = await agora.stop(rid, sid)
    assert response.status_code == 200
    body = response.json()
    assert body["sid"] == sid and body["resourceId"] == rid
    server = body["serverResponse"]
    assert server["uploadingStatus"] == "uploaded"
    names = [f["fileName"] for f in server["fileList"]]
    assert names == [f"{sid}_room.m3u8", f"{sid}_room_0.mp4"]


async def test_async_stop_answers_at_once(emu: AgoraEmulator, agora: Agora) -> None:
    emu.join("room", 7, "host")
    rid, sid = await agora.session("mix")
    emu.advance(25)
    response = await agora.stop(rid, sid, async_stop=True)
    assert response.status_code == 200
    assert response.json()["serverResponse"]["uploadingStatus"] == "unknown"


async def test_after_stop_query_is_501_then_404_and_stop_is_49(
    emu: AgoraEmulator, agora: Agora
) -> None:
    emu.join("room", 7, "host")
    rid, sid = await agora.session("mix")
    emu.advance(15)
    assert (await agora.stop(rid, sid)).status_code == 200
    exiting = await agora.query(rid, sid)
    assert (exiting.status_code, exiting.json()["code"]) == (500, 501)
    again = await agora.stop(rid, sid)
    assert (again.status_code, again.json()["code"]) == (400, 49)
    emu.advance(emu.config.exit_seconds)
    gone = await agora.query(rid, sid)
    assert gone.status_code == 404
    short = {"cname": "room", "code": 404, "reason": "failed to find worker", "uid": "1001"}
    assert gone.json() == short
    assert (await agora.stop(rid, sid)).status_code == 404


async def test_stop_when_nobody_published_is_435(emu: AgoraEmulator, agora: Agora) -> None:
    emu.join("room", 7, "audience")
    rid, sid = await agora.session("mix")
    emu.advance(10)
    response = await agora.stop(rid, sid)
    assert (response.status_code, response.json()["code"]) == (206, 435)
    emu.advance(5)
    assert (await agora.query(rid, sid)).status_code == 404


async def test_404_body_forms() -> None:
    for form, expected in (
        ("short", ["short"]),
        ("long", ["long"]),
        ("alternate", ["short", "long"]),
    ):
        async with running(manual(not_found_form=form)) as (_, agora):
            shapes = []
            for _ in expected:
                body = (await agora.query("r", "0" * 32)).json()
                shapes.append("long" if "serverResponse" in body else "short")
                if "serverResponse" in body:
                    assert body["serverResponse"]["payload"]["message"] == "failed to find worker"
                    assert body["code"] == 404
            assert shapes == expected


async def test_sid_of_another_resource_or_mode_is_rejected(agora: Agora) -> None:
    rid, sid = await agora.session("mix", uid="1")
    other_rid, _ = await agora.session("mix", uid="2")
    assert (await agora.query(other_rid, sid)).json()["code"] == 1003
    wrong_mode = await agora.query(rid, sid, "individual")
    assert wrong_mode.json()["code"] == 2
    mismatch = await agora.stop(rid, sid, cname="room", uid="2")
    assert mismatch.json()["code"] == 432


async def test_update_changes_subscriptions(emu: AgoraEmulator, agora: Agora) -> None:
    emu.join("room", 7, "host")
    emu.join("room", 8, "host")
    rid, sid = await agora.session("individual")
    emu.advance(15)
    audio = {"unsubscribeAudioUids": ["8"]}
    video = {"subscribeVideoUids": ["7"]}
    change = {"streamSubscribe": {"audioUidList": audio, "videoUidList": video}}
    response = await agora.post(rid, sid, "individual", "update", change)
    assert response.status_code == 200
    assert response.json() == {"cname": "room", "uid": "1001", "resourceId": rid, "sid": sid}
    before = {f.name: f.recorded_seconds for f in emu.task(sid).files}
    emu.advance(20)
    after = {f.name: f.recorded_seconds for f in emu.task(sid).files}
    grew = {name.split("__uid_s_")[1] for name in after if after[name] > before[name]}
    assert grew == {"7__uid_e_audio.m3u8", "7__uid_e_video.m3u8"}
    bad = await agora.post(
        rid, sid, "individual", "update", {"webRecordingConfig": {"onhold": True}}
    )
    assert bad.json()["code"] == 2


async def test_web_onhold_pauses_recording(emu: AgoraEmulator, agora: Agora) -> None:
    rid, sid = await agora.session("web")
    emu.advance(21)
    hold = await agora.post(rid, sid, "web", "update", {"webRecordingConfig": {"onhold": True}})
    assert hold.status_code == 200
    recorded = emu.task(sid).files[0].recorded_seconds
    emu.advance(100)
    assert emu.task(sid).files[0].recorded_seconds == recorded
    state = (await agora.query(rid, sid, "web")).json()["serverResponse"]
    assert state["extensionServiceState"][0]["payload"]["onhold"] is True


async def test_update_layout_is_mix_only_and_validated(emu: AgoraEmulator, agora: Agora) -> None:
    rid, sid = await agora.session("mix")
    region = {"uid": "7", "x_axis": 0.0, "y_axis": 0.0, "width": 0.5, "height": 0.5}
    layout = {"mixedVideoLayout": 3, "layoutConfig": [region]}
    assert (await agora.post(rid, sid, "mix", "updateLayout", layout)).status_code == 200
    bad = await agora.post(rid, sid, "mix", "updateLayout", {"mixedVideoLayout": 3})
    ids = {"cname": "room", "uid": "1001", "resourceId": rid, "sid": sid}
    assert bad.json() == {**ids, "code": 2, "reason": "UpdateLayout: layoutConfig is required!"}
    irid, isid = await agora.session("individual", uid="2")
    wrong = await agora.post(irid, isid, "individual", "updateLayout", layout, uid="2")
    assert wrong.json()["code"] == 2


async def test_calls_stop_working_after_resource_expired_hours(
    emu: AgoraEmulator, agora: Agora
) -> None:
    emu.join("room", 7, "host")
    rid = (await agora.acquire(resourceExpiredHour=1)).json()["resourceId"]
    sid = (await agora.start(rid)).json()["sid"]
    emu.advance(3599)
    assert (await agora.query(rid, sid)).status_code == 200
    emu.advance(2)
    assert (await agora.query(rid, sid)).status_code == 404


async def test_ncs_ip_lists_hosts(agora: Agora) -> None:
    response = await agora.http.get("/v1/ncs/ip")
    assert response.json()["data"]["service"]["hosts"][0]["primaryIP"]


async def test_each_emulator_has_its_own_state() -> None:
    first, second = AgoraEmulator(manual()), AgoraEmulator(manual())
    async with agora_client(first) as a, agora_client(second) as b:
        rid = (await Agora(a).acquire()).json()["resourceId"]
        sid = (await Agora(a).start(rid)).json()["sid"]
        assert (await Agora(b).query(rid, sid)).status_code == 404
    await first.aclose()
    await second.aclose()
