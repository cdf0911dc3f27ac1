"""The Cloudflare emulator on its own: REST answers, status transitions, auto-stops, signed
webhooks with RealtimeKit's retry policy, seeded faults, the control API and the CLI."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconcilers.providers.cloudflare.signature import load_public_key, verify
from service.emulators.cloudflare import CloudflareEmulator, FaultConfig
from service.emulators.cloudflare.cli import add_arguments, config_from_args
from tests.cloudflare_helpers import BASE, PUBLIC_PEM, TOKEN, manual

AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOOK_URL = "http://receiver.test/hooks"


class Receiver:
    """Records every webhook; the n-th delivery of an event gets ``statuses[n]``."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = statuses or [200]
        self.got: list[tuple[bytes, dict[str, str]]] = []
        self.app = Starlette(routes=[Route("/hooks", self._handle, methods=["POST"])])
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app))

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        attempt = sum(1 for b, _ in self.got if b == body)
        self.got.append((body, dict(request.headers)))
        return JSONResponse({}, self.statuses[min(attempt, len(self.statuses) - 1)])

    def events(self) -> list[str]:
        out = []
        for body, _ in self.got:
            doc = json.loads(body)
            status = (doc.get("recording") or {}).get("status")
            out.append(f"{doc['event']}:{status}" if status else doc["event"])
        return out


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    yield got
    await got.client.aclose()


async def world(receiver: Receiver | None = None, **config: Any) -> tuple[
    CloudflareEmulator, httpx.AsyncClient
]:
    emu = CloudflareEmulator(
        manual(webhook_url=HOOK_URL if receiver else None, **config),
        http_client=receiver.client if receiver else None,
    )
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emu.app), base_url="http://cf.test", headers=AUTH
    )
    return emu, client


async def start(client: httpx.AsyncClient, meeting: str = "m", **body: Any) -> dict[str, Any]:
    response = await client.post(f"{BASE}/recordings", json={"meeting_id": meeting, **body})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def get(client: httpx.AsyncClient, rid: str) -> dict[str, Any]:
    response = await client.get(f"{BASE}/recordings/{rid}")
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_lifecycle_invoked_recording_uploading_uploaded(receiver: Receiver) -> None:
    emu, client = await world(receiver)
    async with emu, client:
        emu.join("m", "p1")
        rec = await start(client)
        assert rec["status"] == "INVOKED" and rec["start_reason"]["reason"] == "API_CALL"
        emu.advance(2)
        assert (await get(client, rec["id"]))["status"] == "RECORDING"
        active = await client.get(f"{BASE}/recordings/active-recording/m")
        assert active.json()["data"]["id"] == rec["id"]
        emu.advance(30)
        stopped = await client.put(f"{BASE}/recordings/{rec['id']}", json={"action": "stop"})
        assert stopped.json()["data"]["status"] == "UPLOADING"
        assert (await client.get(f"{BASE}/recordings/active-recording/m")).status_code == 404
        emu.advance(5)
        done = await get(client, rec["id"])
        assert done["status"] == "UPLOADED" and done["download_url"]
        assert done["output_file_name"].endswith(".mp4") and done["recording_duration"] == 30
        await emu.settle()
        assert receiver.events() == [
            "meeting.started",
            "meeting.participantJoined",
            "recording.statusUpdate:RECORDING",
            "recording.statusUpdate:UPLOADING",
            "recording.statusUpdate:UPLOADED",
        ]


async def test_one_active_recording_per_meeting_and_errors_in_cloudflare_shape() -> None:
    emu, client = await world()
    async with emu, client:
        await start(client)
        second = await client.post(f"{BASE}/recordings", json={"meeting_id": "m"})
        assert second.status_code == 409 and second.json()["success"] is False
        assert second.json()["errors"][0]["message"]
        multiple = await client.post(
            f"{BASE}/recordings", json={"meeting_id": "m", "allow_multiple_recordings": True}
        )
        assert multiple.status_code == 200
        assert (await client.get(f"{BASE}/recordings/nope")).status_code == 404
        bad = await client.post(f"{BASE}/recordings", json={"meeting_id": "m", "max_seconds": 5})
        assert bad.status_code == 400
        unauthorised = await client.get(
            f"{BASE}/recordings/nope", headers={"Authorization": "Bearer wrong"}
        )
        assert unauthorised.status_code == 401
        listed = await client.get(f"{BASE}/recordings", params={"meeting_id": "m"})
        assert len(listed.json()["data"]) == 2 and listed.json()["paging"]["total_count"] == 2


async def test_pause_resume_and_a_short_recording_errors() -> None:
    emu, client = await world()
    async with emu, client:
        emu.join("m", "p1")
        rec = await start(client)
        emu.advance(2)
        url = f"{BASE}/recordings/{rec['id']}"
        paused = await client.put(url, json={"action": "pause"})
        assert paused.json()["data"]["status"] == "PAUSED"
        assert (await client.put(url, json={"action": "pause"})).status_code == 409
        resumed = await client.put(url, json={"action": "resume"})
        assert resumed.json()["data"]["status"] == "RECORDING"
        emu.advance(1)
        await client.put(url, json={"action": "stop"})
        assert (await get(client, rec["id"]))["status"] == "ERRORED"  # under 5 s
        assert (await client.put(url, json={"action": "stop"})).status_code == 409


async def test_auto_stop_in_an_empty_meeting_and_at_max_seconds() -> None:
    emu, client = await world()
    async with emu, client:
        empty = await start(client, "empty")
        emu.join("busy", "p1")
        capped = await start(client, "busy", max_seconds=120)
        emu.advance(2 + 59)
        assert (await get(client, empty["id"]))["status"] == "RECORDING"
        emu.advance(1)
        stopped = await get(client, empty["id"])
        assert stopped["status"] == "UPLOADING"
        assert stopped["stop_reason"]["reason"] == "ALL_PEERS_LEFT"
        assert (await get(client, capped["id"]))["status"] == "RECORDING"
        emu.advance(60)
        assert (await get(client, capped["id"]))["status"] == "UPLOADING"


async def test_a_participant_joining_cancels_the_empty_meeting_auto_stop() -> None:
    emu, client = await world()
    async with emu, client:
        emu.join("m", "p1")
        rec = await start(client)
        emu.advance(10)
        emu.leave("m", "p1")
        emu.advance(30)
        emu.join("m", "p2")
        emu.advance(120)
        assert (await get(client, rec["id"]))["status"] == "RECORDING"


async def test_webhooks_are_signed_and_retried_on_5xx_with_a_new_delivery_id() -> None:
    receiver = Receiver([503, 500, 200])
    emu, client = await world(receiver, callback_retry_delays=(1.0, 1.0, 1.0))
    async with emu, client:
        emu.join("m", "p1")
        await emu.settle()
        for _ in range(3):  # each retry waits 1 emulated second
            emu.advance(1)
            await emu.settle()
        started = [(b, h) for b, h in receiver.got if b"meeting.started" in b]
        assert len(started) == 3 and len({b for b, _ in started}) == 1  # same event, 3 tries
        key = load_public_key(PUBLIC_PEM)
        for body, headers in receiver.got:
            assert verify(body, headers["rtk-signature"], [key])
            assert headers["rtk-webhook-id"] == "emulator-webhook"
        assert len({h["rtk-uuid"] for _, h in started}) == 3  # unique per delivery
        assert emu.notifier.stats["delivered"] == 2  # started and participantJoined, 3rd try


async def test_webhooks_answered_4xx_are_not_retried() -> None:
    receiver = Receiver([400])
    emu, client = await world(receiver)
    async with emu, client:
        emu.join("m", "p1")
        emu.advance(100)
        await emu.settle()
        assert len(receiver.got) == 2 and emu.notifier.stats["failed"] == 2
        await receiver.client.aclose()


async def test_stable_delivery_ids_when_asked() -> None:
    receiver = Receiver([500, 200])
    emu, client = await world(receiver, stable_delivery_id=True, callback_retry_delays=(0.0,))
    async with emu, client:
        emu.join("m", "p1")
        await emu.settle()
        started = [h["rtk-uuid"] for b, h in receiver.got if b"meeting.started" in b]
        assert len(started) == 2 and len(set(started)) == 1
        await receiver.client.aclose()


async def test_killed_recording_errors_with_an_internal_error(receiver: Receiver) -> None:
    emu, client = await world(receiver)
    async with emu, client:
        emu.join("m", "p1")
        rec = await start(client)
        emu.advance(10)
        emu.kill(rec["id"])
        errored = await get(client, rec["id"])
        assert errored["status"] == "ERRORED"
        assert errored["stop_reason"]["reason"] == "INTERNAL_ERROR"
        await emu.settle()
        assert receiver.events()[-1] == "recording.statusUpdate:ERRORED"


async def _faulty_run(seed: int) -> list[int]:
    faults = FaultConfig(error_rates={"get": 0.5}, seed=seed, side_effect_rate=0.0)
    emu, client = await world(faults=faults)
    async with emu, client:
        rec = await start(client)
        return [(await client.get(f"{BASE}/recordings/{rec['id']}")).status_code for _ in range(20)]


async def test_faults_are_reproducible_from_a_seed() -> None:
    first, again, other = await _faulty_run(3), await _faulty_run(3), await _faulty_run(4)
    assert first == again and first != other
    assert {500, 502, 503} & set(first) and 200 in first
    with pytest.raises(ValueError, match="unknown endpoint"):
        FaultConfig(error_rates={"acquire": 1.0})


async def test_random_kills_end_recordings_errored() -> None:
    emu, client = await world(faults=FaultConfig(kill_rate_per_hour=60.0, seed=1))
    async with emu, client:
        emu.join("m", "p1")
        rec = await start(client)
        emu.advance(3600)
        assert (await get(client, rec["id"]))["status"] == "ERRORED"


async def test_the_control_api_drives_meetings_recordings_time_and_faults() -> None:
    emu, client = await world()
    async with emu, client:
        joined = await client.post("/_emulator/meetings/m/participants", json={"peer_id": "p1"})
        assert joined.status_code == 201 and joined.json()["participants"] == ["p1"]
        rec = await start(client)
        advanced = await client.post("/_emulator/clock/advance", json={"seconds": 3})
        assert advanced.json()["fired"] >= 1
        listed = await client.get("/_emulator/recordings", params={"meeting_id": "m", "live": "1"})
        assert [r["id"] for r in listed.json()] == [rec["id"]]
        killed = await client.post(f"/_emulator/recordings/{rec['id']}/kill")
        assert killed.json()["status"] == "ERRORED"
        left = await client.delete("/_emulator/meetings/m/participants/p1")
        assert left.json()["status"] == "ENDED"
        faults = await client.patch("/_emulator/faults", json={"error_rates": {"start": 1.0}})
        assert faults.json()["error_rates"] == {"start": 1.0}
        failed = await client.post(f"{BASE}/recordings", json={"meeting_id": "x"})
        assert failed.status_code >= 500
        assert (await client.get("/_emulator/public-key")).text == PUBLIC_PEM
        well_known = await client.get("/.well-known/webhooks.json")
        assert well_known.json()["data"]["publicKey"] == PUBLIC_PEM
        hooks = await client.put("/_emulator/webhooks", json={"url": HOOK_URL})
        assert hooks.json() == {"url": HOOK_URL}
        assert (await client.get("/_emulator/stats")).json()["recordings"]["total"] == 1
        assert (await client.post("/_emulator/meetings/zz/end")).status_code == 404


async def test_rate_limit_answers_429_with_retry_after() -> None:
    emu, client = await world(qps_limit=2)
    async with emu, client:
        statuses = [(await client.get(f"{BASE}/recordings")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]


def test_the_cli_flags_build_the_config(tmp_path: Any) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    key_file = tmp_path / "key.pem"
    from tests.cloudflare_helpers import PRIVATE_PEM

    key_file.write_text(PRIVATE_PEM)
    args = parser.parse_args(
        ["--speed", "60", "--empty-timeout", "30", "--error-rate", "start=0.2",
         "--callback-drop-rate", "0.1", "--stable-delivery-id", "--private-key-file", str(key_file),
         "--callback-retry-delays", "1,2"]
    )
    config = config_from_args(args)
    assert config.speed == 60 and config.empty_timeout == 30 and config.stable_delivery_id
    assert config.faults.error_rates == {"start": 0.2} and config.faults.callback_drop_rate == 0.1
    assert config.callback_retry_delays == (1.0, 2.0)
    assert CloudflareEmulator(config).public_key_pem == PUBLIC_PEM
