"""The RealtimeKit client and adapter against the emulator over HTTP (in process), every call
and every outcome class; one wire test over a real loopback server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from reconcilers.outcomes import AlreadyRecording, Ended, RateLimited, Rejected, Retryable
from reconcilers.providers.base import (
    Reservation,
    SessionHandle,
    SessionStatus,
    StartRequest,
    StopResult,
    StorageTarget,
)
from reconcilers.providers.cloudflare.adapter import CloudflareProvider
from reconcilers.providers.cloudflare.client import CloudflareClient, CloudflareConfig, Reply
from reconcilers.providers.cloudflare.errors import classify
from reconcilers.providers.cloudflare.models import validate_options
from service.emulators.cloudflare import CloudflareEmulator, FaultConfig
from tests.cloudflare_helpers import ACCOUNT, APP, CONFIG, TOKEN, manual, transport

STORAGE = StorageTarget("s3", "bucket", "us-east-1", "AKIATEST", "secret-for-tests")


def request(meeting: str = "m", **options: Any) -> StartRequest:
    return StartRequest("acme/room", meeting, "mix", "4000000001", options, STORAGE, ("acme",))


@contextlib.asynccontextmanager
async def emulated(**config: Any) -> AsyncIterator[tuple[CloudflareEmulator, CloudflareClient]]:
    emu = CloudflareEmulator(manual(**config))
    client = CloudflareClient(CONFIG, transport=transport(emu))
    async with emu:
        try:
            yield emu, client
        finally:
            await client.aclose()


async def test_every_call_succeeds_against_the_emulator() -> None:
    async with emulated() as (emu, client):
        emu.join("m", "p1")
        started = await client.start({"meeting_id": "m", "max_seconds": 600})
        assert isinstance(started, Reply) and started.data["status"] == "INVOKED"
        rid = started.data["id"]
        emu.advance(2)
        got = await client.get(rid)
        assert isinstance(got, Reply) and got.data["status"] == "RECORDING"
        active = await client.active("m")
        assert isinstance(active, Reply) and active.data["id"] == rid
        listed = await client.list("m")
        assert isinstance(listed, Reply) and [r["id"] for r in listed.data] == [rid]
        assert isinstance(await client.pause(rid), Reply)
        assert isinstance(await client.resume(rid), Reply)
        emu.advance(10)
        stopped = await client.stop(rid)
        assert isinstance(stopped, Reply) and stopped.data["status"] == "UPLOADING"
        assert await client.active("m") is None


async def test_errors_map_to_outcomes() -> None:
    async with emulated() as (emu, client):
        started = await client.start({"meeting_id": "m"})
        assert isinstance(started, Reply)
        assert isinstance(await client.start({"meeting_id": "m"}), AlreadyRecording)
        assert isinstance(await client.get("missing"), Ended)
        assert isinstance(await client.stop("missing"), Ended)
        assert isinstance(await client.start({"meeting_id": "m2", "max_seconds": 1}), Rejected)
        emu.advance(2)
        rid = started.data["id"]
        emu.kill(rid)
        assert isinstance(await client.stop(rid), Ended)  # not active any more
        emu.set_faults(FaultConfig(error_rates={"get": 1.0}, side_effect_rate=0.0))
        failed = await client.get(rid)
        assert isinstance(failed, Retryable) and failed.http_status in (500, 502, 503)
        emu.set_faults(FaultConfig(qps_limit=1, side_effect_rate=0.0))
        await client.get(rid)
        limited = await client.get(rid)
        assert isinstance(limited, RateLimited) and limited.retry_after == 1.0


async def test_bad_credentials_are_rejected() -> None:
    emu = CloudflareEmulator(manual())
    wrong = CloudflareConfig(ACCOUNT, APP, "wrong-token", base_url=CONFIG.base_url)
    client = CloudflareClient(wrong, transport=transport(emu))
    async with emu:
        result = await client.get("x")
        assert isinstance(result, Rejected) and result.http_status == 401
        assert "wrong-token" not in repr(wrong)
        await client.aclose()


async def test_a_network_failure_is_retryable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = CloudflareClient(CONFIG, transport=httpx.MockTransport(refuse))
    result = await client.get("x")
    assert isinstance(result, Retryable) and result.code == "transport"
    await client.aclose()


def test_classify_reads_both_error_shapes_and_success_false() -> None:
    dyte = {"success": False, "error": {"code": 404, "message": "no such recording"}}
    assert isinstance(classify("get", 404, dyte), Ended)
    assert isinstance(classify("start", 400, {"errors": [{"message": "Already recording"}]}),
                      AlreadyRecording)
    assert isinstance(classify("get", 200, {"success": False}), Retryable)
    assert classify("get", 200, {"success": True, "result": {}}) is None
    assert isinstance(classify("start", 404, {}), Rejected)  # an unknown meeting


# -- the adapter -----------------------------------------------------------------------------


async def test_the_adapter_runs_a_session_through_the_provider_port() -> None:
    async with emulated() as (emu, client):
        provider = CloudflareProvider(CONFIG, client=client)
        emu.join("m", "p1")
        req = request(file_name_prefix="weekly")
        reservation = await provider.reserve(req)
        assert reservation == Reservation()
        handle = await provider.start(req, reservation)
        assert isinstance(handle, SessionHandle) and handle.channel == "m"
        body = emu.engine.recordings[handle.sid]
        assert body.storage is not None and body.storage["type"] == "aws"
        assert body.storage["path"] == "acme/" and body.max_seconds == 86_400
        emu.advance(2)
        status = await provider.query(handle)
        assert isinstance(status, SessionStatus) and status.state == "recording"
        assert await provider.update(handle, {}) is None
        emu.advance(30)
        stopped = await provider.stop(handle)
        assert isinstance(stopped, StopResult) and stopped.upload_status == "UPLOADING"
        emu.advance(5)
        done = await provider.query(handle)
        assert isinstance(done, SessionStatus) and done.state == "ended"
        assert done.files and done.files[0].name.startswith("weekly_")
        assert isinstance(await provider.stop(handle), Ended)


async def test_a_conflicting_start_adopts_our_own_active_recording() -> None:
    async with emulated() as (emu, client):
        provider = CloudflareProvider(CONFIG, client=client)
        first = await provider.start(request(), Reservation())
        again = await provider.start(request(), Reservation())
        assert isinstance(first, SessionHandle) and isinstance(again, SessionHandle)
        assert again.sid == first.sid and len(emu.engine.recordings) == 1


async def test_a_participants_recording_is_not_adopted() -> None:
    async with emulated() as (emu, client):
        provider = CloudflareProvider(CONFIG, client=client)
        emu.engine.start({"meeting_id": "m"}, caller="USER")
        result = await provider.start(request(), Reservation())
        assert isinstance(result, AlreadyRecording)


async def test_bad_options_and_storage_are_rejected_before_any_call() -> None:
    async with emulated() as (emu, client):
        provider = CloudflareProvider(CONFIG, client=client)
        r2 = StartRequest("acme/r", "m", "mix", "1", {}, StorageTarget("r2", "b", "auto", "a", "s"))
        assert isinstance(await provider.reserve(r2), Rejected)
        assert isinstance(await provider.start(request(url="ftp://x"), Reservation()), Rejected)
        assert emu.stats.to_json()["requests"] == {}


@pytest.mark.parametrize(
    ("mode", "options", "field"),
    [
        ("individual", {}, "mode"),
        ("mix", {"meeting_id": "m"}, "meeting_id"),
        ("mix", {"storage_config": {}}, "storage_config"),
        ("mix", {"allow_multiple_recordings": True}, "allow_multiple_recordings"),
        ("mix", {"max_seconds": 30}, "max_seconds"),
        ("mix", {"video_config": {"codec": "AV1"}}, "video_config.codec"),
        ("mix", {"file_name_prefix": "a-b"}, "file_name_prefix"),
        ("mix", {"recordingConfig": {}}, "recordingConfig"),
    ],
)
def test_options_validation_names_the_field(mode: str, options: Any, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        validate_options(mode, options)


def test_valid_options_are_normalised() -> None:
    options = {"video_config": {"codec": "VP8", "width": 1920}, "max_seconds": 3600}
    assert validate_options("mix", options) == options


# -- over a real socket ----------------------------------------------------------------------


@pytest.mark.slow
async def test_the_client_talks_to_the_emulator_over_loopback() -> None:
    emu = CloudflareEmulator(manual())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(emu.app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}/client/v4"
    client = CloudflareClient(CloudflareConfig(ACCOUNT, APP, TOKEN, base_url=base))
    try:
        started = await client.start({"meeting_id": "wire"})
        assert isinstance(started, Reply)
        assert isinstance(await client.get(started.data["id"]), Reply)
        assert await client.active("nothing") is None
    finally:
        await client.aclose()
        server.should_exit = True
        await task
        sock.close()
