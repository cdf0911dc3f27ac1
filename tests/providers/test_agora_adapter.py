"""AgoraProvider over a fake server: reserve, start, query and stop replies of every mode, and
live updates."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from reconcilers.outcomes import Ended, Rejected, Retryable
from reconcilers.providers.agora.adapter import RESOURCE_TTL_MS
from reconcilers.providers.agora.responses import parse_query, parse_stop
from reconcilers.providers.base import (
    RecordedFile,
    Reservation,
    SessionHandle,
    SessionStatus,
    StopResult,
)
from tests.providers.agora_fakes import FakeAgora, provider, start_request

FILE = {
    "fileName": "sid_room.m3u8",
    "trackType": "audio_and_video",
    "uid": "0",
    "mixedAllUser": True,
    "isPlayable": True,
    "sliceStartTime": 1562724971626,
}
M3U8 = RecordedFile("sid_room.m3u8", "audio_and_video", "0", 1562724971626, True)


def handle(mode: str = "mix", resource_id: str | None = "res") -> SessionHandle:
    return SessionHandle("agora", "room", "4000000001", mode, "sid", resource_id)  # type: ignore[arg-type]


async def test_reserve_acquires_with_scene_and_expiry() -> None:
    fake = FakeAgora(httpx.Response(200, json={"cname": "room", "uid": "1", "resourceId": "R"}))
    p = provider(fake, clock=lambda: 1000.0)
    reservation = await p.reserve(start_request("web", max_seconds=7200))
    await p.aclose()
    assert reservation == Reservation("R", 1_000_000 + RESOURCE_TTL_MS)
    assert fake.body() == {
        "cname": "room",
        "uid": "4000000001",
        "clientRequest": {"resourceExpiredHour": 26, "scene": 1},
    }


async def test_reserve_refuses_a_bad_request_before_any_call() -> None:
    fake = FakeAgora()
    p = provider(fake)
    bad_options = await p.reserve(start_request("individual", options={"recordingConfig": {}}))
    bad_prefix = await p.reserve(start_request(file_prefix=("no-dashes",)))
    await p.aclose()
    assert isinstance(bad_options, Rejected)
    assert bad_options.message.startswith("recordingConfig.subscribeUidGroup:")
    assert isinstance(bad_prefix, Rejected)
    assert bad_prefix.message.startswith("storageConfig.fileNamePrefix.0:")
    assert fake.requests == []


async def test_reserve_without_resource_id_is_retryable() -> None:
    p = provider(FakeAgora(httpx.Response(200, json={"cname": "room"})))
    outcome = await p.reserve(start_request())
    await p.aclose()
    assert type(outcome) is Retryable


async def test_start_returns_a_handle() -> None:
    fake = FakeAgora(httpx.Response(200, json={"resourceId": "R", "sid": "S"}))
    p = provider(fake)
    result = await p.start(start_request("individual"), Reservation("R"))
    await p.aclose()
    assert result == SessionHandle("agora", "room", "4000000001", "individual", "S", "R")
    assert fake.paths[0].endswith("/resourceid/R/mode/individual/start")
    storage = fake.body()["clientRequest"]["storageConfig"]
    assert storage == {
        "vendor": 1,
        "region": 3,
        "bucket": "rec",
        "accessKey": "AK",
        "secretKey": "SK",
        "fileNamePrefix": ["t1", "room", "seg0"],
    }


QUERIES: list[tuple[str, dict[str, Any], SessionStatus]] = [
    (
        "individual recording",
        {"status": 5, "fileListMode": "json", "fileList": [FILE], "sliceStartTime": 1562724971},
        SessionStatus(
            "recording",
            5,
            (M3U8,),
            {"fileListMode": "json", "sliceStartTime": 1562724971000},
        ),
    ),
    (
        "individual with screenshots",
        {"status": 4, "sliceStartTime": 1562724971626},
        SessionStatus("recording", 4, (), {"sliceStartTime": 1562724971626}),
    ),
    (
        "mix hls: one M3U8 name as a string, status as a string",
        {"status": "5", "fileListMode": "string", "fileList": "sid_room.m3u8"},
        SessionStatus("recording", 5, (RecordedFile("sid_room.m3u8"),), {"fileListMode": "string"}),
    ),
    (
        "mix hls+mp4, lowercase filename",
        {"status": 5, "fileListMode": "json", "fileList": [{"filename": "a.mp4"}]},
        SessionStatus("recording", 5, (RecordedFile("a.mp4"),), {"fileListMode": "json"}),
    ),
    ("starting", {"status": 2}, SessionStatus("starting", 2)),
    ("stopping", {"status": 7}, SessionStatus("stopping", 7)),
    ("exited", {"status": 8}, SessionStatus("ended", 8)),
    ("exited abnormally", {"status": 20}, SessionStatus("ended", 20)),
    ("unreadable", {"status": "weird"}, SessionStatus("unknown", "weird")),
    ("empty", {}, SessionStatus("unknown", None)),
]


@pytest.mark.parametrize(("name", "server", "expected"), QUERIES)
def test_parse_query(name: str, server: dict[str, Any], expected: SessionStatus) -> None:
    body = {"cname": "room", "uid": "1", "resourceId": "R", "sid": "S", "serverResponse": server}
    assert parse_query(body) == expected, name


def web_query(status: int, state: str) -> dict[str, Any]:
    return {
        "serverResponse": {
            "status": status,
            "extensionServiceState": [
                {
                    "serviceName": "web_recorder_service",
                    "payload": {
                        "fileList": [{"filename": "w.m3u8", "sliceStartTime": 1627613641393}],
                        "onhold": False,
                        "state": state,
                    },
                },
                {
                    "serviceName": "rtmp_publish_service",
                    "payload": {
                        "outputs": [{"rtmpUrl": "rtmp://cdn/k", "status": "publishing"}],
                        "state": "inProgress",
                    },
                },
            ],
        }
    }


def test_parse_web_query_trusts_the_web_recorder_state() -> None:
    status = parse_query(web_query(0, "inProgress"))
    assert status.state == "recording"
    assert status.raw_status == 0
    assert status.files == (RecordedFile("w.m3u8", slice_start_ms=1627613641393),)
    assert status.detail == {
        "web_state": "inProgress",
        "onhold": False,
        "rtmp": [{"url": "rtmp://cdn/k", "status": "publishing"}],
    }
    assert parse_query(web_query(0, "init")).state == "starting"
    assert parse_query(web_query(5, "exit")).state == "stopping"
    assert parse_query(web_query(8, "inProgress")).state == "ended"


STOPS: list[tuple[str, dict[str, Any], StopResult]] = [
    (
        "individual / mix",
        {
            "serverResponse": {
                "fileListMode": "json",
                "fileList": [FILE],
                "uploadingStatus": "uploaded",
            }
        },
        StopResult((M3U8,), "uploaded"),
    ),
    (
        "backuped with an empty file list",
        {"serverResponse": {"fileList": [], "uploadingStatus": "backuped"}},
        StopResult((), "backuped"),
    ),
    ("screenshots", {"serverResponse": {"uploadingStatus": "unknown"}}, StopResult((), "unknown")),
    (
        "web, with the misspelled playload",
        {
            "serverResponse": {
                "extensionServiceState": [
                    {"serviceName": "upload_service", "playload": {"uploadingStatus": "uploaded"}},
                    {
                        "serviceName": "web_recorder_service",
                        "payload": {"fileList": [{"filename": "w.mp4"}], "state": "exit"},
                    },
                ]
            }
        },
        StopResult((RecordedFile("w.mp4"),), "uploaded"),
    ),
    ("upload outlived the wait (50)", {"code": 50}, StopResult((), "timeout")),
]


@pytest.mark.parametrize(("name", "body", "expected"), STOPS)
def test_parse_stop(name: str, body: dict[str, Any], expected: StopResult) -> None:
    assert parse_stop(body) == expected, name


async def test_query_and_stop_through_the_provider() -> None:
    fake = FakeAgora(
        httpx.Response(200, json={"serverResponse": {"status": 5, "fileList": [FILE]}}),
        httpx.Response(200, json={"serverResponse": {"uploadingStatus": "uploaded"}}),
        httpx.Response(404, json={"code": 404, "reason": "failed to find worker"}),
    )
    p = provider(fake)
    assert (await p.query(handle())) == SessionStatus("recording", 5, (M3U8,), {})
    assert (await p.stop(handle())) == StopResult((), "uploaded")
    assert isinstance(await p.stop(handle()), Ended)
    await p.aclose()
    assert fake.body() == {
        "cname": "room",
        "uid": "4000000001",
        "clientRequest": {"async_stop": False},
    }


async def test_async_stop_is_a_choice() -> None:
    fake = FakeAgora(httpx.Response(200, json={"serverResponse": {}}))
    p = provider(fake, async_stop=True)
    await p.stop(handle())
    await p.aclose()
    assert fake.body()["clientRequest"] == {"async_stop": True}


async def test_sessions_without_resource_id_cannot_be_controlled() -> None:
    fake = FakeAgora()
    p = provider(fake)
    for result in (
        await p.query(handle(resource_id=None)),
        await p.stop(handle(resource_id=None)),
        await p.update(handle(resource_id=None), {"layout": {"mixedVideoLayout": 1}}),
    ):
        assert isinstance(result, Rejected)
    await p.aclose()
    assert fake.requests == []


async def test_update_sends_each_live_change_in_turn() -> None:
    fake = FakeAgora(httpx.Response(200, json={"sid": "sid"}))
    p = provider(fake)
    live = {
        "streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["#allstream#"]}},
        "layout": {"mixedVideoLayout": 1, "backgroundColor": "#000000"},
    }
    assert await p.update(handle(), live) is None
    assert await p.update(handle("web"), {"webRecordingConfig": {"onhold": True}}) is None
    assert await p.update(handle(), {}) is None
    await p.aclose()
    assert [path.rsplit("/", 2)[1:] for path in fake.paths] == [
        ["mix", "update"],
        ["mix", "updateLayout"],
        ["web", "update"],
    ]
    assert fake.body(0)["clientRequest"] == {"streamSubscribe": live["streamSubscribe"]}
    assert fake.body(1)["clientRequest"] == live["layout"]
    assert fake.body(2)["clientRequest"] == {"webRecordingConfig": {"onhold": True}}


async def test_update_stops_at_the_first_failure() -> None:
    fake = FakeAgora(httpx.Response(404, json={"code": 404, "reason": "failed to find worker"}))
    p = provider(fake)
    outcome = await p.update(handle(), {"streamSubscribe": {}, "layout": {"mixedVideoLayout": 1}})
    await p.aclose()
    assert isinstance(outcome, Ended)
    assert len(fake.requests) == 1


def test_validate_options_is_the_models_check() -> None:
    p = provider(FakeAgora())
    assert p.name == "agora"
    assert p.validate_options("mix", {"recordingConfig": {"maxIdleTime": "60"}}) == {
        "recordingConfig": {"maxIdleTime": 60}
    }
    with pytest.raises(ValueError, match=r"^recordingConfig\.maxIdleTime: "):
        p.validate_options("mix", {"recordingConfig": {"maxIdleTime": 1}})
