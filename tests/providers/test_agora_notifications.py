"""Real notification payloads from ``docs/providers/agora.md`` replayed through parse_notification
and details_of, each event type's details, and a property: details_of never raises."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from reconcilers.providers.agora import notifications as ncs
from reconcilers.providers.base import RecordedFile
from tests.procs import ROOT

SIGNATURE_VECTOR = (
    b'{"eventMs":1560408533119,"eventType":10,"noticeId":"4eb720f0-8da7-11e9-a43e-53f411c2761f",'
    b'"notifyMs":1560408533119,"payload":{"a":"1","b":2},"productId":1}'
)
EVENT_31_DETAILS = json.loads(
    '{"msgName":"uploaded","fileList":[{"fileName":"xxx.mp4","trackType":"audio_and_video",'
    '"uid":"0","mixedAllUser":true,"isPlayable":true,"sliceStartTime":1619172632080},'
    '{"fileName":"xxx.m3u8","trackType":"audio_and_video","uid":"0","mixedAllUser":true,'
    '"isPlayable":true,"sliceStartTime":1619172632080}],"status":0}'
)
EVENT_71_DETAILS = json.loads(
    '{"msgName":"web_recorder_stopped","code":1,"message":"max_recording_hour",'
    '"details":"max recording hour is 4","fileList":[{"filename":"test_p1627613634_www.m3u8",'
    '"sliceStartTime":1627613641393},{"filename":"test_p1627613634_www_0.mp4",'
    '"sliceStartTime":1627613641393}]}'
)


def recording(event: int, details: Any, **payload: Any) -> dict[str, Any]:
    body = {
        "cname": "room",
        "uid": "4000000001",
        "sid": "sid-1",
        "sequence": 3,
        "sendts": 1619172632080,
        "serviceType": 2,
        "details": details,
        **payload,
    }
    return {"noticeId": "n-1", "productId": 3, "eventType": event, "notifyMs": 1, "payload": body}


def rtc(event: int, **payload: Any) -> dict[str, Any]:
    body = {"channelName": "room", "ts": 1611566412, **payload}
    return {"noticeId": "n-2", "productId": 1, "eventType": event, "notifyMs": 1, "payload": body}


def details(body: dict[str, Any]) -> ncs.Details:
    return ncs.details_of(ncs.parse_notification(body))


def test_event_31_composite_with_mp4() -> None:
    n = ncs.parse_notification(recording(31, EVENT_31_DETAILS))
    assert (n.type, n.channel, n.uid, n.sid, n.sequence) == (
        "agora.uploaded",
        "room",
        "4000000001",
        "sid-1",
        3,
    )
    file = RecordedFile("xxx.mp4", "audio_and_video", "0", 1619172632080, True)
    assert ncs.details_of(n) == ncs.Uploaded(
        files=(file, RecordedFile("xxx.m3u8", "audio_and_video", "0", 1619172632080, True)),
        backuped=False,
    )


def test_event_71_web_recorder_stopped() -> None:
    assert details(recording(71, EVENT_71_DETAILS, serviceType=6)) == ncs.WebRecorderStopped(
        code=1,
        message="max_recording_hour",
        files=(
            RecordedFile("test_p1627613634_www.m3u8", slice_start_ms=1627613641393),
            RecordedFile("test_p1627613634_www_0.mp4", slice_start_ms=1627613641393),
        ),
    )


def test_signature_vector_body_is_an_other_event() -> None:
    n = ncs.parse_notification(json.loads(SIGNATURE_VECTOR))
    assert (n.notice_id, n.product_id, n.event_type, n.name) == (
        "4eb720f0-8da7-11e9-a43e-53f411c2761f",
        1,
        10,
        "unknown.10",
    )
    assert ncs.details_of(n) == ncs.OtherEvent()


def test_top_level_sid_when_the_payload_has_none() -> None:
    body = recording(40, {"msgName": "recorder_started", "status": 0})
    del body["payload"]["sid"]
    body["sid"] = "top-sid"
    n = ncs.parse_notification(body)
    assert n.sid == "top-sid"
    assert ncs.details_of(n) == ncs.ComponentStarted("recorder", 0)


def test_numbers_as_strings() -> None:
    body = recording(41, {"msgName": "recorder_leave", "leaveCode": "6"}, sequence="7")
    n = ncs.parse_notification(body)
    assert n.sequence == 7
    leave = ncs.details_of(n)
    assert isinstance(leave, ncs.RecorderLeave)
    assert (leave.leave_code, leave.signal, leave.no_users, leave.client_leave) == (
        6,
        True,
        True,
        False,
    )
    assert details(recording(33, {"progress": "5000"})) == ncs.UploadingProgress(5000)
    assert details(recording(3, {"status": "5"})) == ncs.StatusUpdate(5)
    member = details(rtc(103, uid=4000000001, platform="6", clientType="10", clientSeq="12"))
    assert member == ncs.ChannelMember("room", "4000000001", True, "broadcaster", 12, True)


def test_filename_and_file_name_and_seconds() -> None:
    entries = [
        {"filename": "a.m3u8", "sliceStartTime": 1619172632},  # seconds, as the docs say
        {"fileName": "b.mp4", "sliceStartTime": "1619172632080", "isPlayable": "false"},
        {"trackType": "audio"},  # names no file: skipped
        "c.m3u8",
    ]
    assert details(recording(32, {"fileList": entries})) == ncs.Uploaded(
        files=(
            RecordedFile("a.m3u8", slice_start_ms=1619172632000),
            RecordedFile("b.mp4", slice_start_ms=1619172632080, playable=False),
            RecordedFile("c.m3u8"),
        ),
        backuped=True,
    )


def test_backuped_with_an_empty_file_list() -> None:
    body = recording(31, {"msgName": "uploaded", "status": 0, "uploadingStatus": "backuped",
                          "fileList": []})  # fmt: skip
    assert details(body) == ncs.Uploaded(files=(), backuped=True)
    web = recording(31, {"msgName": "uploaded", "status": 0})  # web mode: names come in 71
    assert details(web) == ncs.Uploaded(files=(), backuped=False)


def test_extra_internal_fields_are_ignored() -> None:
    extra = {"fileListStr": "x", "inProgressBitmask": 3, "backuped": 2, "status": 0}
    assert details(recording(31, {**EVENT_31_DETAILS, **extra})) == details(
        recording(31, EVENT_31_DETAILS)
    )


RECORDING_CASES: list[tuple[int, dict[str, Any], ncs.Details]] = [
    (
        1,
        {"module": 1, "errorLevel": 5, "errorCode": 32, "stat": 0, "errorMsg": "bad storage"},
        ncs.RecordingError(1, 5, 32, "bad storage"),
    ),
    (2, {"module": "1", "warnCode": 31}, ncs.RecordingWarning(1, 31)),
    (3, {"status": 4, "recordingMode": 1, "fileList": "x.m3u8"}, ncs.StatusUpdate(4)),
    (4, {"fileList": "sid_room.m3u8"}, ncs.FileInfos("sid_room.m3u8")),
    (11, {"exitStatus": 1}, ncs.SessionExit(1)),
    (12, {"newUid": 123456}, ncs.SessionFailover("123456")),
    (30, {"status": 0}, ncs.ComponentStarted("uploader", 0)),
    (70, {"recorderStartTime": 1}, ncs.ComponentStarted("web_recorder", None)),
    (41, {"leaveCode": 0}, ncs.RecorderLeave(0)),
    (41, {}, ncs.RecorderLeave(-1)),
    (42, {"startUtcMs": 10, "discontinueUtcMs": "9"}, ncs.SliceStart(10, 9)),
    (90, {"fileName": "a.ts;b.ts; ;c.m3u8"}, ncs.DownloadFailed(("a.ts", "b.ts", "c.m3u8"))),
    (13, {}, ncs.OtherEvent()),
    (43, {"streamUid": 0, "state": 1}, ncs.OtherEvent()),
    (999, {}, ncs.OtherEvent()),
]


@pytest.mark.parametrize(("event", "data", "expected"), RECORDING_CASES)
def test_recording_event_details(event: int, data: dict[str, Any], expected: ncs.Details) -> None:
    assert details(recording(event, data)) == expected


def test_missing_fields_become_none() -> None:
    assert details(recording(1, {})) == ncs.RecordingError(None, None, None, "")
    assert details(recording(11, None)) == ncs.SessionExit(None)
    assert details(recording(71, "oops")) == ncs.WebRecorderStopped(None, "", ())


def test_properties() -> None:
    assert ncs.RecordingError(0, 5, 1, "").fatal and not ncs.RecordingError(0, 4, 1, "").fatal
    assert ncs.SessionExit(1).abnormal and not ncs.SessionExit(0).abnormal
    assert not ncs.SessionExit(None).abnormal
    init = ncs.RecorderLeave(0)
    assert init.init_failed and not (init.signal or init.no_users or init.client_leave)
    normal = ncs.RecorderLeave(16)
    assert normal.client_leave and not (normal.init_failed or normal.no_users)
    idle = ncs.RecorderLeave(4 | 8)
    assert idle.no_users and not (idle.signal or idle.client_leave)
    unknown = ncs.RecorderLeave(-1)
    assert not (unknown.init_failed or unknown.no_users or unknown.signal)


RTC_CASES: list[tuple[int, dict[str, Any], ncs.Details]] = [
    (101, {}, ncs.ChannelLifecycle("room", True)),
    (102, {"lastUid": 5}, ncs.ChannelLifecycle("room", False)),
    (104, {"uid": 5, "platform": 7, "clientSeq": 3, "reason": 1}, ncs.ChannelMember(
        "room", "5", False, "broadcaster", 3, False)),
    (105, {"uid": "6", "platform": 1, "clientSeq": 1}, ncs.ChannelMember(
        "room", "6", True, "audience", 1, False)),
    (106, {"uid": 6, "platform": 6, "clientType": 3}, ncs.ChannelMember(
        "room", "6", False, "audience", None, False)),
    (107, {"uid": 7, "platform": 6, "clientType": 10, "clientSeq": 2}, ncs.ChannelMember(
        "room", "7", True, "user", 2, True)),
    (108, {"uid": 7, "clientSeq": 4}, ncs.ChannelMember("room", "7", False, "user", 4, False)),
    (111, {"uid": 8, "clientSeq": 5}, ncs.RoleChange("room", "8", "broadcaster", 5)),
    (112, {"uid": 8, "clientSeq": "6"}, ncs.RoleChange("room", "8", "audience", 6)),
    (113, {}, ncs.OtherEvent()),
]  # fmt: skip


@pytest.mark.parametrize(("event", "data", "expected"), RTC_CASES)
def test_rtc_event_details(event: int, data: dict[str, Any], expected: ncs.Details) -> None:
    assert details(rtc(event, **data)) == expected


def test_rtc_event_without_channel_or_uid() -> None:
    body = {"noticeId": "x", "productId": 1, "eventType": 103, "payload": {}}
    assert details(body) == ncs.ChannelMember("", "", True, "broadcaster", None, False)


def test_other_products_are_other_events() -> None:
    body = {"noticeId": "x", "productId": 5, "eventType": 31, "payload": {"details": {}}}
    assert details(body) == ncs.OtherEvent()


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=10,
)
FIELDS = st.sampled_from(
    [
        "fileList", "fileName", "filename", "sliceStartTime", "status", "leaveCode", "newUid",
        "exitStatus", "errorLevel", "errorCode", "module", "progress", "startUtcMs", "code",
        "message", "uid", "platform", "clientType", "clientSeq", "channelName", "isPlayable",
        "uploadingStatus", "warnCode", "errorMsg", "discontinueUtcMs", "trackType",
    ]
)  # fmt: skip
PAYLOADS = st.dictionaries(FIELDS | st.text(max_size=8), JSON, max_size=8)


@settings(max_examples=100, deadline=None)
@given(
    product=st.sampled_from([1, 3, 4, 5]) | st.integers(),
    event=st.sampled_from([*ncs.RECORDING_EVENTS, *ncs.RTC_EVENTS]) | st.integers(),
    payload=PAYLOADS,
    inner=PAYLOADS | JSON,
    file_list=st.lists(PAYLOADS | JSON, max_size=3),
)
def test_details_of_never_raises(
    product: int, event: int, payload: dict[str, Any], inner: Any, file_list: list[Any]
) -> None:
    if isinstance(inner, dict):
        inner = {**inner, "fileList": file_list}
    body = {
        "noticeId": "n",
        "productId": product,
        "eventType": event,
        "payload": {**payload, "details": inner},
    }
    result = ncs.details_of(ncs.parse_notification(body))
    assert isinstance(result, ncs.Details)


_ENVELOPE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.sampled_from(["3", "1", "40", "1700000000000"]),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_ENVELOPE_FIELDS = st.sampled_from(["noticeId", "productId", "eventType", "notifyMs", "payload"])


@example({"noticeId": "n", "productId": 3, "eventType": 40, "notifyMs": None, "payload": {}})
@example({"noticeId": 7, "productId": "3", "eventType": 40, "payload": {}})
@given(st.dictionaries(_ENVELOPE_FIELDS, _ENVELOPE_VALUES))
def test_the_exact_type_shortcut_reads_envelopes_as_the_model_does(body: dict[str, Any]) -> None:
    """Envelopes whose fields have their exact types skip the pydantic model; whatever the
    fields, the result (or the error naming the field) is the model's."""
    shortcut = ncs._exact_envelope(body)
    try:
        model: Any = ncs._envelope_model().model_validate(body)
    except ValidationError:
        assert shortcut is None
        return
    if shortcut is not None:
        assert tuple(shortcut) == (
            model.noticeId,
            model.productId,
            model.eventType,
            model.notifyMs,
            model.payload,
        )


def test_the_writer_process_folds_notifications_without_importing_pydantic() -> None:
    """The writer child imports the projections; pydantic (7.7 MB there) only comes with a
    body that needs coercing. A fresh interpreter, since this one has pydantic loaded."""
    code = (
        "import sys\n"
        "import service.store.sqlite.child, reconcilers.projections\n"
        "from reconcilers.providers.agora.notifications import parse_notification\n"
        "parse_notification({'noticeId': 'n', 'productId': 3, 'eventType': 40, 'payload': {}})\n"
        "assert 'pydantic' not in sys.modules, 'exact envelope'\n"
        "parse_notification({'noticeId': 7, 'productId': 3, 'eventType': 40, 'payload': {}})\n"
        "assert 'pydantic' in sys.modules, 'coerced envelope'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
