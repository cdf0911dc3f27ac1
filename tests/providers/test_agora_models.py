"""Request schemas: every documented rule accepted and refused with the field named, and the
bodies each mode sends compared with ``docs/providers/agora.md``'s examples."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from reconcilers.providers.agora.bodies import (
    acquire_request,
    fold_live,
    resource_expired_hour,
    start_request,
    update_requests,
)
from reconcilers.providers.agora.models import validate_options
from reconcilers.providers.agora.storage import region_of, storage_config
from reconcilers.providers.base import Reservation, StorageTarget
from tests.providers.agora_fakes import FakeAgora, provider
from tests.providers.agora_fakes import start_request as make_request


def web(**param: Any) -> dict[str, Any]:
    service = {
        "serviceName": "web_recorder_service",
        "serviceParam": {"url": "https://example.com", "maxRecordingHour": 1, **param},
    }
    return {"extensionServiceConfig": {"extensionServices": [service]}}


def rc(**config: Any) -> dict[str, Any]:
    return {"recordingConfig": config}


def ind(**config: Any) -> dict[str, Any]:
    return rc(**{"subscribeUidGroup": 0, **config})


def layout(*regions: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"layout": {"mixedVideoLayout": 3, "layoutConfig": list(regions), **fields}}


REGION = {"x_axis": 0.0, "y_axis": 0.0, "width": 1.0, "height": 1.0}
U32 = [str(i) for i in range(1, 33)]

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("mix", {"recordingFileConfig": {"avFileType": ["mp4"]}}, "recordingFileConfig.avFileType"),
    ("individual", rc(maxIdleTime=30), "recordingConfig.subscribeUidGroup"),
    (
        "individual",
        {**ind(), "recordingFileConfig": {"avFileType": ["hls", "mp4"]}},
        "recordingFileConfig.avFileType",
    ),
    ("mix", {"recordingFileConfig": {"avFileType": ["hls", "mp3"]}}, "recordingFileConfig"),
    ("individual", {}, "recordingConfig"),
    ("individual", ind(subscribeUidGroup=6), "recordingConfig.subscribeUidGroup"),
    (
        "mix",
        rc(subscribeAudioUids=["1"], unsubscribeAudioUids=["2"]),
        "recordingConfig.unsubscribeAudioUids",
    ),
    (
        "mix",
        rc(subscribeVideoUids=["1"], unsubscribeVideoUids=["2"]),
        "recordingConfig.unsubscribeVideoUids",
    ),
    ("mix", rc(subscribeAudioUids=[*U32, "33"]), "recordingConfig.subscribeAudioUids"),
    ("mix", rc(unsubscribeVideoUids=[*U32, "33"]), "recordingConfig.unsubscribeVideoUids"),
    ("mix", rc(maxIdleTime=4), "recordingConfig.maxIdleTime"),
    ("mix", rc(maxIdleTime=2_592_001), "recordingConfig.maxIdleTime"),
    ("mix", layout({**REGION, "x_axis": 1.5}), "layout.layoutConfig.0.x_axis"),
    ("mix", layout({**REGION, "height": -0.1}), "layout.layoutConfig.0.height"),
    ("mix", layout({**REGION, "alpha": 2}), "layout.layoutConfig.0.alpha"),
    ("mix", {"layout": {"layoutConfig": [REGION]}}, "layout.layoutConfig"),
    ("mix", {"layout": {"mixedVideoLayout": 2}}, "layout.maxResolutionUid"),
    (
        "mix",
        rc(transcodingConfig={"width": 1920, "height": 1081}),
        "recordingConfig.transcodingConfig.width",
    ),
    ("mix", rc(channelType=2), "recordingConfig.channelType"),
    ("mix", rc(decryptionMode=1), "recordingConfig.secret"),
    ("mix", {"recordingConfg": {}}, "recordingConfg"),
    ("mix", {"snapshotConfig": {"fileType": ["jpg"]}}, "snapshotConfig"),
    ("individual", ind(transcodingConfig={}), "recordingConfig.transcodingConfig"),
    ("individual", {**ind(), "snapshotConfig": {"fileType": ["png"]}}, "snapshotConfig.fileType"),
    ("web", {}, "extensionServiceConfig"),
    ("web", {**web(), **rc()}, "recordingConfig"),
    ("web", web(maxRecordingHour=0), "extensionServiceConfig.extensionServices.0.serviceParam"),
    ("web", web(maxRecordingHour=721), "extensionServiceConfig.extensionServices.0.serviceParam"),
    ("web", web(videoFps=4), "extensionServiceConfig.extensionServices.0.serviceParam.videoFps"),
    ("web", web(videoFps=61), "extensionServiceConfig.extensionServices.0.serviceParam.videoFps"),
    (
        "web",
        web(maxVideoDuration=29),
        "extensionServiceConfig.extensionServices.0.serviceParam.maxVideoDuration",
    ),
    (
        "web",
        web(maxVideoDuration=241),
        "extensionServiceConfig.extensionServices.0.serviceParam.maxVideoDuration",
    ),
    (
        "web",
        web(readyTimeout=61),
        "extensionServiceConfig.extensionServices.0.serviceParam.readyTimeout",
    ),
    (
        "web",
        web(videoWidth=1920, videoHeight=1200),
        "extensionServiceConfig.extensionServices.0.serviceParam.videoWidth",
    ),
    ("web", web(url="ftp://x"), "extensionServiceConfig.extensionServices.0.serviceParam.url"),
    (
        "web",
        {**web(), "rtmpPublishConfig": {"outputs": [{"rtmpUrl": "rtmp://a"}] * 2}},
        "rtmpPublishConfig.outputs",
    ),
    ("mix", {"webRecordingConfig": {"onhold": True}}, "webRecordingConfig"),
    ("web", {**web(), "layout": {}}, "layout"),
    ("unknown", {}, "mode"),
]


@pytest.mark.parametrize(("mode", "options", "field"), REFUSED)
def test_refused_options_name_the_field(mode: str, options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_options(mode, options)
    message = str(info.value)
    assert message.startswith(field), message
    assert ": " in message


def test_web_service_missing_max_recording_hour_is_named() -> None:
    options = web()
    del options["extensionServiceConfig"]["extensionServices"][0]["serviceParam"][
        "maxRecordingHour"
    ]
    with pytest.raises(ValueError, match=r"^extensionServiceConfig\..*maxRecordingHour: "):
        validate_options("web", options)


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("mix", {}),
    ("mix", {"recordingFileConfig": {"avFileType": ["hls", "mp4"]}}),
    ("mix", rc(maxIdleTime=5, subscribeAudioUids=U32, unsubscribeVideoUids=["#allstream#"])),
    ("mix", rc(maxIdleTime=2_592_000)),
    ("mix", rc(transcodingConfig={"width": 1920, "height": 1080, "mixedVideoLayout": 1})),
    ("mix", rc(transcodingConfig={"width": 1080, "height": 1920})),
    ("mix", layout({**REGION, "x_axis": 1, "alpha": 0, "uid": "7"}, backgroundColor="#00ff00")),
    ("mix", {"layout": {"mixedVideoLayout": 2, "maxResolutionUid": "9"}}),
    ("individual", ind(subscribeUidGroup=5, streamMode="standard")),
    ("individual", {**ind(), "snapshotConfig": {"captureInterval": 5, "fileType": ["jpg"]}}),
    ("individual", {**ind(), "streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["1"]}}}),
    ("web", web(maxRecordingHour=720, videoFps=60, maxVideoDuration=30, readyTimeout=0)),
    ("web", web(maxRecordingHour=1, videoFps=5, maxVideoDuration=240, readyTimeout=60)),
    ("web", {**web(), "webRecordingConfig": {"onhold": True}}),
    ("web", {**web(), "rtmpPublishConfig": {"outputs": [{"rtmpUrl": "rtmp://cdn/live/k"}]}}),
]


@pytest.mark.parametrize(("mode", "options"), ACCEPTED)
def test_accepted_options_come_back_as_given(mode: str, options: dict[str, Any]) -> None:
    assert validate_options(mode, options) == options


def test_options_are_normalised_to_agora_types() -> None:
    out = validate_options("mix", rc(maxIdleTime="300", subscribeAudioUids=[123]))
    assert out == rc(maxIdleTime=300, subscribeAudioUids=["123"])


# -- storage -------------------------------------------------------------------------------


def target(kind: str, region: str = "us-east-1", endpoint: str | None = None) -> StorageTarget:
    return StorageTarget(kind, "bucket", region, "AK", "SK", endpoint=endpoint, prefix=("a", "b"))


@pytest.mark.parametrize(
    ("kind", "region", "endpoint", "vendor", "number"),
    [
        ("s3", "us-east-1", None, 1, 0),
        ("s3", "eu-central-1", None, 1, 7),
        ("s3", "ap-southeast-3", None, 1, 24),
        ("s3", "EU_SOUTH_1", None, 1, 25),
        ("s3", "12", None, 1, 12),
        ("alibaba", "cn-beijing", None, 2, 3),
        ("tencent", "ap-guangzhou", None, 3, 3),
        ("azure", "westeurope", None, 5, 0),
        ("gcs", "us-central1", None, 6, 0),
        ("r2", "auto", "https://acct.r2.cloudflarestorage.com/", 11, 0),
        ("s3-compatible", "x", "minio.example.com", 11, 0),
        ("s3", "us-east-1", "s3.example.com", 11, 0),
    ],
)
def test_storage_vendor_and_region(
    kind: str, region: str, endpoint: str | None, vendor: int, number: int
) -> None:
    config = storage_config(target(kind, region, endpoint))
    assert (config["vendor"], config["region"]) == (vendor, number)
    assert config["fileNamePrefix"] == ["a", "b"]
    if vendor == 11:
        assert config["extensionParams"]["endpoint"] in (
            "acct.r2.cloudflarestorage.com",
            "minio.example.com",
            "s3.example.com",
        )
    else:
        assert "extensionParams" not in config


@pytest.mark.parametrize(
    ("storage", "prefix", "field"),
    [
        (target("s3", "mars-1"), (), "storageConfig.region"),
        (target("dropbox"), (), "storageConfig.vendor"),
        (target("s3"), ("a-b",), "storageConfig.fileNamePrefix.0"),
        (target("s3"), ("x" * 64, "y" * 64), "storageConfig.fileNamePrefix"),
    ],
)
def test_storage_refused(storage: StorageTarget, prefix: tuple[str, ...], field: str) -> None:
    with pytest.raises(ValueError) as info:
        storage_config(storage, prefix)
    assert str(info.value).startswith(field + ":")


def test_prefix_of_exactly_128_characters_is_accepted() -> None:
    prefix = ("x" * 63, "y" * 63)  # 63 + "/" + 63 + "/" = 128
    assert storage_config(target("s3"), prefix)["fileNamePrefix"] == list(prefix)


def test_unknown_region_number_is_zero_where_agora_ignores_it() -> None:
    assert region_of(5, "anything") == 0


# -- bodies --------------------------------------------------------------------------------

MIX_EXAMPLE = {
    "uid": "527841",
    "cname": "httpClient463224",
    "clientRequest": {
        "recordingConfig": {
            "maxIdleTime": 30,
            "streamTypes": 2,
            "audioProfile": 1,
            "channelType": 0,
            "videoStreamType": 0,
            "transcodingConfig": {
                "height": 640,
                "width": 360,
                "bitrate": 500,
                "fps": 15,
                "mixedVideoLayout": 1,
                "backgroundColor": "#FF0000",
            },
        },
        "storageConfig": {
            "accessKey": "xxxxxxf",
            "region": 3,
            "bucket": "xxxxx",
            "secretKey": "xxxxx",
            "vendor": 2,
            "fileNamePrefix": ["directory1", "directory2"],
        },
    },
}


async def test_mix_start_sends_the_documented_body() -> None:
    fake = FakeAgora(httpx.Response(200, json={"sid": "s1", "resourceId": "r"}))
    p = provider(fake)
    example = MIX_EXAMPLE["clientRequest"]
    request = make_request(
        "mix",
        channel="httpClient463224",
        recorder_uid="527841",
        options={"recordingConfig": example["recordingConfig"]},  # type: ignore[index]
        storage=StorageTarget("alibaba", "xxxxx", "cn-beijing", "xxxxxxf", "xxxxx"),
        file_prefix=("directory1", "directory2"),
    )
    await p.start(request, Reservation(resource_id="res/1"))
    await p.aclose()
    assert fake.body() == MIX_EXAMPLE
    assert fake.paths == [
        "POST /v1/apps/970ca35de60c44645bbae8a215061b33/cloud_recording"
        "/resourceid/res%2F1/mode/mix/start"
    ]


def test_individual_start_request() -> None:
    options = {
        **ind(maxIdleTime=300, subscribeAudioUids=["#allstream#"]),
        "snapshotConfig": {"captureInterval": 10, "fileType": ["jpg"]},
    }
    body = start_request("individual", options, {"vendor": 1}, token="007tok")
    assert body == {
        "recordingConfig": {
            "subscribeUidGroup": 0,
            "maxIdleTime": 300,
            "subscribeAudioUids": ["#allstream#"],
        },
        "snapshotConfig": {"captureInterval": 10, "fileType": ["jpg"]},
        "token": "007tok",
        "storageConfig": {"vendor": 1},
    }


def test_web_start_request_has_no_token_and_folds_live_options() -> None:
    options = {
        **web(videoWidth=1280, videoHeight=720),
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        "webRecordingConfig": {"onhold": True},
        "rtmpPublishConfig": {"outputs": [{"rtmpUrl": "rtmps://cdn/live/k"}]},
    }
    body = start_request("web", options, {"vendor": 1}, token="007tok")
    assert body == {
        "extensionServiceConfig": {
            "extensionServices": [
                {
                    "serviceName": "web_recorder_service",
                    "serviceParam": {
                        "url": "https://example.com",
                        "maxRecordingHour": 1,
                        "videoWidth": 1280,
                        "videoHeight": 720,
                        "onhold": True,
                    },
                },
                {
                    "serviceName": "rtmp_publish_service",
                    "errorHandlePolicy": "error_ignore",
                    "serviceParam": {"outputs": [{"rtmpUrl": "rtmps://cdn/live/k"}]},
                },
            ]
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        "storageConfig": {"vendor": 1},
    }


def test_live_subscriptions_and_layout_fold_into_start_fields() -> None:
    options = {
        **rc(subscribeAudioUids=["1"], maxIdleTime=60),
        "streamSubscribe": {"audioUidList": {"unsubscribeAudioUids": ["9"]}},
        **layout(REGION, backgroundColor="#000000"),
    }
    assert fold_live("mix", options) == {
        "recordingConfig": {
            "maxIdleTime": 60,
            "unsubscribeAudioUids": ["9"],
            "transcodingConfig": {
                "mixedVideoLayout": 3,
                "layoutConfig": [REGION],
                "backgroundColor": "#000000",
            },
        }
    }
    assert "streamSubscribe" in options  # the spec's own dict is left alone


def test_a_live_layout_replaces_every_layout_field_at_start() -> None:
    transcoding = {"width": 640, "height": 360, "mixedVideoLayout": 3, "layoutConfig": [REGION]}
    options = {**rc(transcodingConfig=transcoding), "layout": {"mixedVideoLayout": 1}}
    body = start_request("mix", options, {"vendor": 1}, token=None)
    assert body["recordingConfig"]["transcodingConfig"] == {
        "width": 640,
        "height": 360,
        "mixedVideoLayout": 1,
    }


def test_update_requests_per_mode() -> None:
    live = {
        "streamSubscribe": {"videoUidList": {"subscribeVideoUids": ["1"]}},
        "layout": {"mixedVideoLayout": 1},
        "webRecordingConfig": {"onhold": False},
        "rtmpPublishConfig": {"outputs": [{"rtmpUrl": "rtmp://a/b"}]},
    }
    assert update_requests("individual", live) == [
        ("update", {"streamSubscribe": live["streamSubscribe"]})
    ]
    assert update_requests("mix", live) == [
        ("update", {"streamSubscribe": live["streamSubscribe"]}),
        ("updateLayout", {"mixedVideoLayout": 1}),
    ]
    assert update_requests("web", live) == [
        (
            "update",
            {
                "webRecordingConfig": live["webRecordingConfig"],
                "rtmpPublishConfig": live["rtmpPublishConfig"],
            },
        )
    ]
    assert update_requests("mix", {}) == []


def test_acquire_request() -> None:
    assert acquire_request("mix", 12 * 3600) == {"resourceExpiredHour": 36}
    assert acquire_request("web", 3600) == {"resourceExpiredHour": 25, "scene": 1}
    assert resource_expired_hour(10**9) == 720
    assert resource_expired_hour(0) == 24
