"""AgoraProvider against the Agora emulator, mounted in process through httpx.ASGITransport.

The emulator runs on a manual clock (``speed=0``): tests move time with ``advance`` instead of
sleeping. It follows ``docs/providers/agora.md``, so these tests check that the bodies we build are
accepted and that every error class it can produce maps to the outcome the reconciler expects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from reconcilers.outcomes import AlreadyRecording, Ended, RateLimited, Rejected, Retryable
from reconcilers.providers.agora.adapter import AgoraProvider
from reconcilers.providers.agora.client import AgoraConfig
from reconcilers.providers.agora.errors import ResourceExpired
from reconcilers.providers.agora.responses import parse_channel_users
from reconcilers.providers.base import (
    ChannelUsers,
    Reservation,
    SessionHandle,
    SessionStatus,
    StartRequest,
    StopResult,
)
from service.emulators.agora import AgoraEmulator, EmulatorConfig, FaultConfig
from tests.providers.agora_fakes import APP_ID, CERTIFICATE, CONFIG, KEY, SECRET, start_request

USER = 1001
LIVE_OPTIONS: dict[str, dict[str, Any]] = {
    "individual": {"streamSubscribe": {"audioUidList": {"subscribeAudioUids": [str(USER)]}}},
    "mix": {
        "streamSubscribe": {"videoUidList": {"unsubscribeVideoUids": ["42"]}},
        "layout": {"mixedVideoLayout": 1, "backgroundColor": "#101010"},
    },
    "web": {"webRecordingConfig": {"onhold": True}},
}
#: What the spec said at start: web pages record, then pause through update.
START_OPTIONS = {**LIVE_OPTIONS, "web": {"webRecordingConfig": {"onhold": False}}}


def emulator(**changes: Any) -> AgoraEmulator:
    config = EmulatorConfig(
        app_id=APP_ID, customer_key=KEY, customer_secret=SECRET, speed=0, qps_limit=None
    )
    return AgoraEmulator(dataclasses.replace(config, **changes))


def connect(emu: AgoraEmulator, config: AgoraConfig = CONFIG) -> AgoraProvider:
    return AgoraProvider(config, transport=httpx.ASGITransport(app=emu.app))


@pytest.fixture
async def emu() -> AsyncIterator[AgoraEmulator]:
    async with emulator() as running:
        yield running


@pytest.fixture
async def agora(emu: AgoraEmulator) -> AsyncIterator[AgoraProvider]:
    provider = connect(emu)
    yield provider
    await provider.aclose()


async def started(
    agora: AgoraProvider, request: StartRequest | None = None
) -> tuple[SessionHandle, Reservation]:
    request = request or start_request()
    reservation = await agora.reserve(request)
    assert isinstance(reservation, Reservation), reservation
    handle = await agora.start(request, reservation)
    assert isinstance(handle, SessionHandle), handle
    return handle, reservation


@pytest.mark.parametrize("mode", ["individual", "mix", "web"])
async def test_a_whole_session_in_every_mode(
    emu: AgoraEmulator, agora: AgoraProvider, mode: str
) -> None:
    emu.join("room", USER, profile="communication")
    request = start_request(mode)
    options = {**request.options, **START_OPTIONS[mode]}
    handle, _ = await started(agora, dataclasses.replace(request, options=options))
    first = await agora.query(handle)
    assert isinstance(first, SessionStatus) and first.state == "starting"

    emu.advance(30)
    status = await agora.query(handle)
    assert isinstance(status, SessionStatus), status
    assert (status.state, status.raw_status) == ("recording", 5)
    assert status.files and all(f.name.startswith("t1/room/seg0/") for f in status.files)

    assert await agora.update(handle, LIVE_OPTIONS[mode]) is None
    if mode == "web":
        paused = await agora.query(handle)
        assert isinstance(paused, SessionStatus) and paused.detail["onhold"] is True

    stopped = await agora.stop(handle)
    assert isinstance(stopped, StopResult), stopped
    assert stopped.upload_status == "uploaded"
    assert {f.name for f in status.files} <= {f.name for f in stopped.files}

    exiting = await agora.query(handle)
    assert type(exiting) is Retryable and exiting.code == 501  # "recording service is exiting"
    again = await agora.stop(handle)
    assert isinstance(again, Ended) and again.code == 49
    emu.advance(30)
    for gone in (await agora.query(handle), await agora.stop(handle)):
        assert isinstance(gone, Ended) and gone.code == 404


async def test_start_repeated_with_the_same_resource_is_already_recording(
    agora: AgoraProvider,
) -> None:
    request = start_request()
    _, reservation = await started(agora, request)
    again = await agora.start(request, reservation)
    assert isinstance(again, AlreadyRecording) and again.code == 7


async def test_a_second_task_for_the_same_uid_is_already_recording(agora: AgoraProvider) -> None:
    request = start_request()
    await started(agora, request)
    reservation = await agora.reserve(request)
    assert isinstance(reservation, Reservation)
    conflict = await agora.start(request, reservation)
    assert isinstance(conflict, AlreadyRecording) and conflict.code == 53


async def test_an_expired_resource_needs_a_new_acquire(
    emu: AgoraEmulator, agora: AgoraProvider
) -> None:
    request = start_request()
    reservation = await agora.reserve(request)
    assert isinstance(reservation, Reservation)
    emu.advance(301)
    outcome = await agora.start(request, reservation)
    assert isinstance(outcome, ResourceExpired) and outcome.code == 433


async def test_an_unreadable_resource_needs_a_new_acquire(agora: AgoraProvider) -> None:
    outcome = await agora.start(start_request(), Reservation("not-a-resource"))
    assert isinstance(outcome, ResourceExpired) and outcome.code == 1001


async def test_mismatched_identities_are_rejected(agora: AgoraProvider) -> None:
    request = start_request()
    reservation = await agora.reserve(request)
    assert isinstance(reservation, Reservation)
    other_uid = await agora.start(dataclasses.replace(request, recorder_uid="7"), reservation)
    assert isinstance(other_uid, Rejected) and other_uid.code == 432

    handle, _ = await started(agora, dataclasses.replace(request, channel="room2"))
    wrong_resource = dataclasses.replace(handle, resource_id=reservation.resource_id)
    mismatch = await agora.query(wrong_resource)
    assert isinstance(mismatch, Rejected) and mismatch.code == 1003
    wrong_mode = await agora.query(dataclasses.replace(handle, mode="individual"))
    assert isinstance(wrong_mode, Rejected) and wrong_mode.code == 2


async def test_concurrency_quota_is_rate_limited() -> None:
    async with emulator(max_concurrent_tasks=1) as emu:
        agora = connect(emu)
        await started(agora)
        over = await agora.reserve(start_request(channel="other"))
        await agora.aclose()
    assert isinstance(over, RateLimited) and over.code == 406


async def test_qps_limit_is_rate_limited() -> None:
    async with emulator(qps_limit=1) as emu:
        agora = connect(emu)
        assert isinstance(await agora.reserve(start_request()), Reservation)
        limited = await agora.reserve(start_request())
        await agora.aclose()
    assert isinstance(limited, RateLimited) and limited.http_status == 429


async def test_bad_credentials_and_a_wrong_url_are_rejected(emu: AgoraEmulator) -> None:
    for config, status in (
        (dataclasses.replace(CONFIG, customer_secret="wrong"), 401),
        (dataclasses.replace(CONFIG, base_url="https://agora.test/wrong"), 404),
    ):
        agora = connect(emu, config)
        outcome = await agora.reserve(start_request())
        await agora.aclose()
        assert isinstance(outcome, Rejected) and outcome.http_status == status


async def test_stop_before_anything_was_recorded_is_ended(agora: AgoraProvider) -> None:
    handle, _ = await started(agora)
    outcome = await agora.stop(handle)
    assert isinstance(outcome, Ended) and (outcome.code, outcome.http_status) == (435, 206)


async def test_an_idle_channel_ends_the_session(emu: AgoraEmulator, agora: AgoraProvider) -> None:
    emu.join("room", USER, profile="communication")
    handle, _ = await started(agora)
    emu.advance(30)
    emu.leave("room", USER)
    emu.advance(30 + 30)  # maxIdleTime defaults to 30 s, then the exit
    gone = await agora.query(handle)
    assert isinstance(gone, Ended) and gone.message == "failed to find worker"


async def test_the_long_404_form_is_ended() -> None:
    async with emulator(not_found_form="long") as emu:
        agora = connect(emu)
        handle = SessionHandle("agora", "room", "4000000001", "mix", "nosuchsid", "r")
        gone = await agora.stop(handle)
        await agora.aclose()
    assert isinstance(gone, Ended)
    assert (gone.code, gone.message) == (404, "failed to find worker")
    assert "serverResponse" in gone.body


async def test_a_failover_is_a_404_then_recording_again(
    emu: AgoraEmulator, agora: AgoraProvider
) -> None:
    emu.join("room", USER, profile="communication")
    handle, _ = await started(agora)
    emu.advance(30)
    emu.kill(handle.sid, failover=True, window=20)
    assert isinstance(await agora.query(handle), Ended)
    emu.advance(40)
    back = await agora.query(handle)
    assert isinstance(back, SessionStatus) and back.state == "recording"


async def test_injected_transient_errors_are_retryable(
    emu: AgoraEmulator, agora: AgoraProvider
) -> None:
    handle, reservation = await started(agora)
    emu.set_faults(FaultConfig(error_rates={"*": 1.0}, side_effect_rate=0.0))
    results = [
        await agora.reserve(start_request(channel="x")),
        await agora.start(start_request(channel="x"), reservation),
        await agora.query(handle),
        await agora.update(handle, LIVE_OPTIONS["mix"]),
        await agora.stop(handle),
    ]
    for result in results:
        assert isinstance(result, Retryable), result
        assert result.code in (500, 501, 504, 62, 65, 502)


async def test_the_token_lets_the_recorder_in_when_the_app_has_a_certificate() -> None:
    with_cert = dataclasses.replace(CONFIG, app_certificate=CERTIFICATE)
    async with emulator(app_certificate=CERTIFICATE) as emu:
        emu.join("room", USER, profile="communication")
        emu.join("room2", USER, profile="communication")
        agora, no_token = connect(emu, with_cert), connect(emu)
        handle, _ = await started(agora)
        refused, _ = await started(no_token, start_request(channel="room2"))
        emu.advance(30)
        recording = await agora.query(handle)
        dropped = await no_token.query(refused)
        await agora.aclose()
        await no_token.aclose()
    assert isinstance(recording, SessionStatus) and recording.state == "recording"
    assert isinstance(dropped, Ended)


async def test_the_channel_user_list_counts_users_or_hosts_and_recorders(
    emu: AgoraEmulator, agora: AgoraProvider
) -> None:
    """RTC Channel Management's user list (docs/providers/agora.md#10-rtc-channel-events): the check
    behind "empty channel"."""
    assert await agora.channel_users("room") == ChannelUsers(exists=False)
    emu.join("room", USER, profile="communication")
    assert await agora.channel_users("room") == ChannelUsers(True, (str(USER),))
    handle, _ = await started(agora)
    emu.advance(5)
    listed = await agora.channel_users("room")
    assert isinstance(listed, ChannelUsers)  # the recorder counts as a user, as at Agora
    assert set(listed.users) == {str(USER), handle.recorder_uid}

    emu.join("live", 7, role="host")
    emu.join("live", 8, role="audience")
    assert await agora.channel_users("live") == ChannelUsers(True, ("7",))  # hosts only


async def test_the_channel_user_list_needs_the_credentials(emu: AgoraEmulator) -> None:
    wrong = dataclasses.replace(CONFIG, customer_secret="wrong")
    provider = connect(emu, wrong)
    outcome = await provider.channel_users("room")
    await provider.aclose()
    assert isinstance(outcome, Rejected) and outcome.http_status == 401


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"success": True, "data": {"channel_exist": False}}, ChannelUsers(False)),
        (
            {"success": True, "data": {"channel_exist": True, "mode": 1, "total": 2,
                                       "users": [906218805, "906218806"]}},
            ChannelUsers(True, ("906218805", "906218806")),
        ),
        (
            {"success": True, "data": {"channel_exist": True, "mode": 2, "broadcasters": [5],
                                       "audience": [6, 7], "audience_total": 2}},
            ChannelUsers(True, ("5",)),
        ),
        ({"success": True, "data": {"channel_exist": "true", "mode": "1"}}, ChannelUsers(True)),
        ({}, ChannelUsers(False)),
    ],
)
def test_the_user_list_reply_is_read_leniently(
    body: dict[str, Any], expected: ChannelUsers
) -> None:
    assert parse_channel_users(body) == expected
