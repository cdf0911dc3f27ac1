"""``POST /webhooks/cloudflare`` in process on a real SQLite file, and the payload parsing and
signature checks behind it, against the payloads ``docs/providers/cloudflare.md#22-payloads``
quotes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from reconcilers.events import Event, Fold, NewEvent
from reconcilers.projections import PROJECTIONS, closed_index
from reconcilers.providers.cloudflare.signature import load_public_key, sign, verify
from reconcilers.providers.cloudflare.webhooks import WebhookError, parse_webhook
from service.config import ConfigError, Settings
from service.runtime import create_app
from service.webhooks.cloudflare import to_event
from tests.cloudflare_helpers import KEY, OTHER_KEY, PUBLIC_PEM
from tests.helpers import running

#: The RealtimeKit example of §2.2 (``fileSize`` a string, ISO times), ids filled in.
RTK_UPLOADED: dict[str, Any] = {
    "event": "recording.statusUpdate",
    "recording": {
        "id": "97cb480d-0000-4000-8000-000000000001",
        "recordingId": "97cb480d-0000-4000-8000-000000000001",
        "status": "UPLOADED",
        "downloadUrl": "https://example.invalid/r.mp4",
        "audioDownloadUrl": "https://example.invalid/r.mp3",
        "downloadUrlExpiry": "2026-06-10T10:30:00.000Z",
        "startedTime": "2026-06-03T10:00:00.000Z",
        "stoppedTime": "2026-06-03T10:30:00.000Z",
        "fileSize": "2044680",
        "outputFileName": "weekly-sync.mp4",
        "meetingId": "50c8940e-0000-4000-8000-000000000002",
        "recordingDuration": 1800,
        "organizationId": "c94c437b-0000-4000-8000-000000000003",
        "roomUUID": "05e57591-0000-4000-8000-000000000004",
    },
    "meeting": {
        "id": "50c8940e-0000-4000-8000-000000000002",
        "sessionId": "05e57591-0000-4000-8000-000000000004",
        "title": "Weekly sync",
        "status": "LIVE",
    },
}

#: Dyte's ``UPLOADING`` example: no meetingId in ``recording``, a space in the times, a number.
DYTE_UPLOADING: dict[str, Any] = {
    "event": "recording.statusUpdate",
    "recording": {
        "id": "rec-dyte",
        "status": "UPLOADING",
        "startedTime": "2023-04-14 04:46:08.306221Z",
        "stoppedTime": "2023-04-14 04:47:08.306221Z",
        "fileSize": 2044680,
    },
    "meeting": {"id": "meeting-dyte", "sessionId": "s-1", "startedAt": "2023-04-14T04:40:00Z"},
}

MEETING_STARTED = {
    "event": "meeting.started",
    "meeting": {
        "id": "m-1",
        "sessionId": "s-1",
        "title": "t",
        "status": "LIVE",
        "createdAt": "2026-06-03T09:59:00.000Z",
        "startedAt": "2026-06-03T10:00:00.000Z",
        "endedAt": None,
        "organizedBy": {"id": "o", "name": "Org"},
    },
}
MEETING_ENDED = {
    "event": "meeting.ended",
    "meeting": {**MEETING_STARTED["meeting"], "endedAt": "2026-06-03T11:00:00.000Z"},  # type: ignore[dict-item]
    "reason": "ALL_PARTICIPANTS_LEFT",
}


def body_of(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def headers(body: bytes, delivery: str = "d-1", key: Any = KEY) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "rtk-signature": sign(body, key),
        "rtk-uuid": delivery,
        "rtk-webhook-id": "w-1",
    }


@pytest.fixture
def app(tmp_path: Path) -> Starlette:
    settings = Settings.from_env(
        {"CLOUDFLARE_WEBHOOK_PUBLIC_KEY": PUBLIC_PEM.replace("\n", "\\n")},  # env-file style
        database_url=f"sqlite:///{tmp_path}/events.db",
    )
    return create_app(settings)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with running(app) as c:
        yield c


async def post(client: httpx.AsyncClient, document: Any, **kw: Any) -> httpx.Response:
    body = body_of(document)
    return await client.post("/webhooks/cloudflare", content=body, headers=headers(body, **kw))


async def events(app: Starlette) -> list[Event]:
    store = app.state.context.store
    return [e for e in await store.read_log() if e.source == "cloudflare"]


# -- parsing ---------------------------------------------------------------------------------


def test_the_realtimekit_status_update_parses() -> None:
    hook = parse_webhook(RTK_UPLOADED)
    assert hook.type == "cloudflare.recording.statusUpdate"
    assert hook.meeting_id == "50c8940e-0000-4000-8000-000000000002"
    assert hook.recording is not None
    assert hook.recording.file_size == 2044680 and hook.recording.state == "ended"
    assert hook.recording.output_file_name == "weekly-sync.mp4"
    assert hook.content_key.endswith(":UPLOADED")
    assert hook.occurred_ms is not None


def test_the_dyte_variant_takes_the_meeting_from_meeting_id_and_lenient_times() -> None:
    hook = parse_webhook(DYTE_UPLOADING)
    assert hook.meeting_id == "meeting-dyte"
    assert hook.recording is not None and hook.recording.file_size == 2044680
    assert hook.recording.state == "stopping" and hook.occurred_ms is not None


def test_meeting_events_parse_with_their_session() -> None:
    started, ended = parse_webhook(MEETING_STARTED), parse_webhook(MEETING_ENDED)
    assert started.meeting_id == ended.meeting_id == "m-1"
    assert started.content_key != ended.content_key
    assert ended.reason == "ALL_PARTICIPANTS_LEFT"


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ([], "body"),
        ({"meeting": {}}, "event"),
        ({"event": "recording.statusUpdate"}, "recording"),
        ({"event": "recording.statusUpdate", "recording": {"status": "RECORDING"}}, "recording.id"),
        ({"event": "recording.statusUpdate", "recording": {"id": "r"}}, "recording.status"),
        ({"event": "meeting.started", "meeting": {}}, "meeting.id"),
        ({"event": "meeting.participantJoined", "meeting": {"id": "m"}}, "participant.peerId"),
    ],
)
def test_unusable_payloads_name_the_field(document: Any, field: str) -> None:
    with pytest.raises(WebhookError) as caught:
        parse_webhook(document)
    assert caught.value.field == field


def test_unknown_events_are_kept_with_a_content_key() -> None:
    hook = parse_webhook({"event": "meeting.chatSynced", "meetingId": "m", "sessionId": "s"})
    assert hook.meeting_id == "m" and hook.content_key.startswith("meeting.chatSynced:")


# -- signatures ------------------------------------------------------------------------------


def test_signatures_verify_only_the_exact_bytes_under_the_right_key() -> None:
    body = body_of(RTK_UPLOADED)
    signature = sign(body, KEY)
    public = load_public_key(PUBLIC_PEM)
    assert verify(body, signature, [public])
    assert not verify(body + b" ", signature, [public])
    assert not verify(body, signature, [OTHER_KEY.public_key()])
    assert verify(body, signature, [OTHER_KEY.public_key(), public])  # rotation
    assert not verify(body, "not base64!", [public])


def test_a_bad_key_in_the_environment_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CLOUDFLARE_WEBHOOK_PUBLIC_KEY"):
        Settings.from_env({"CLOUDFLARE_WEBHOOK_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nxx"})


# -- the endpoint ----------------------------------------------------------------------------


async def test_a_signed_webhook_is_stored_once_and_acknowledged(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    response = await post(client, RTK_UPLOADED)
    assert response.status_code == 200 and response.json()["duplicate"] is False
    (event,) = await events(app)
    assert event.type == "cloudflare.recording.statusUpdate"
    assert event.room == RTK_UPLOADED["meeting"]["id"]
    assert event.session == RTK_UPLOADED["recording"]["id"]
    assert event.payload == RTK_UPLOADED


async def test_replays_are_stored_once_even_with_a_new_delivery_id(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    assert (await post(client, RTK_UPLOADED, delivery="d-1")).json()["duplicate"] is False
    assert (await post(client, RTK_UPLOADED, delivery="d-1")).json()["duplicate"] is True
    again = await post(client, RTK_UPLOADED, delivery="d-2")  # RealtimeKit: new id per delivery
    assert again.status_code == 200 and again.json()["duplicate"] is True
    reserialised = {**RTK_UPLOADED, "extra": "a retry whose bytes differ"}
    same_id = await post(client, reserialised, delivery="d-1")
    assert same_id.json()["duplicate"] is True
    assert len(await events(app)) == 1


async def test_a_missing_or_bad_signature_is_401_and_nothing_is_stored(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    body = body_of(RTK_UPLOADED)
    missing = await client.post("/webhooks/cloudflare", content=body)
    assert missing.status_code == 401
    assert missing.json()["error"]["field"] == "rtk-signature"
    forged = await client.post(
        "/webhooks/cloudflare", content=body, headers=headers(body, key=OTHER_KEY)
    )
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "unauthorized"
    tampered = await client.post(
        "/webhooks/cloudflare", content=body.replace(b"UPLOADED", b"ERRORED"), headers=headers(body)
    )
    assert tampered.status_code == 401
    assert await events(app) == []


async def test_bad_input_is_4xx_naming_the_field_and_nothing_is_stored(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    raw = b"{not json"
    bad_json = await client.post("/webhooks/cloudflare", content=raw, headers=headers(raw))
    assert bad_json.status_code == 400
    invalid = await post(client, {"event": "recording.statusUpdate", "recording": {"id": "r"}})
    assert invalid.status_code == 422
    assert invalid.json()["error"]["field"] == "recording.status"
    assert await events(app) == []


async def test_without_a_configured_key_every_webhook_is_401(tmp_path: Path) -> None:
    settings = Settings.from_env({}, database_url=f"sqlite:///{tmp_path}/e.db")
    async with running(create_app(settings)) as c:
        assert (await post(c, RTK_UPLOADED)).status_code == 401


# -- folding ---------------------------------------------------------------------------------


def _fold(*documents: dict[str, Any]) -> Fold:
    fold = Fold(PROJECTIONS)
    for seq, document in enumerate(documents, 1):
        new: NewEvent = to_event(parse_webhook(document), document)
        fold.apply(Event(seq, new.source, new.dedup_key, new.type, new.payload, new.room,
                         new.session, datetime.now(UTC), new.occurred_at))
    return fold


def test_status_updates_fold_into_a_session_and_late_ones_do_not_undo() -> None:
    recording = {**RTK_UPLOADED["recording"], "status": "RECORDING"}
    earlier = {**RTK_UPLOADED, "recording": recording}
    fold = _fold(RTK_UPLOADED, earlier)  # the RECORDING retry arrives after UPLOADED
    row = fold.rows[("sessions", f"cloudflare:{RTK_UPLOADED['recording']['id']}")]
    # Ended: filed beside the meeting's live sessions, not among them.
    assert row.room == closed_index(f"cloudflare/{RTK_UPLOADED['meeting']['id']}")
    assert row.data["state"] == "ended" and row.data["files"] == ["weekly-sync.mp4"]


def test_meeting_events_fold_into_presence_in_time_order() -> None:
    fold = _fold(MEETING_STARTED, MEETING_ENDED, MEETING_STARTED)  # a late retry of started
    row = fold.rows[("presence", "cloudflare/m-1")]
    assert row.data["known"] is True
    assert not any(u["present"] for u in row.data["users"].values())
