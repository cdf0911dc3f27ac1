"""``POST /webhooks/agora`` and the app around it, in process (no socket), on a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from reconcilers.events import Event, Store
from service.config import Settings
from service.runtime import create_app
from service.store import open_store
from service.webhooks.agora import sign, signature_problem
from tests.helpers import SECRET, Boom, encode, notification, running, signed

VECTOR_BODY = (
    b'{"eventMs":1560408533119,"eventType":10,"noticeId":"4eb720f0-8da7-11e9-a43e-53f411c2761f",'
    b'"notifyMs":1560408533119,"payload":{"a":"1","b":2},"productId":1}'
)
VECTOR_SHA1 = "033c62f40f687675f17f0f41f91a40c71c0f134c"
VECTOR_SHA256 = "6d3320c60b11101395b7fc8f9068748808a0aa1bfa064438e39d1bc2c7d74d99"

MakeSettings = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path) -> MakeSettings:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": f"sqlite:///{tmp_path}/events.db",
            "agora_ncs_secret": SECRET,
            **overrides,
        }
        return Settings.from_env({}, **values)

    return make


@pytest.fixture
def app(make_settings: MakeSettings) -> Starlette:
    return create_app(make_settings())


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with running(app) as c:
        yield c


async def post(client: httpx.AsyncClient, document: Any, **kw: Any) -> httpx.Response:
    body = encode(document)
    return await client.post("/webhooks/agora", content=body, headers=signed(body, **kw))


def store_of(app: Starlette) -> Store:
    store: Store = app.state.context.store
    return store


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    return body["error"]


# -- signatures -------------------------------------------------------------------------------


def test_signature_vectors_from_the_agora_docs() -> None:
    assert sign(VECTOR_BODY, b"secret", "sha1") == VECTOR_SHA1
    assert sign(VECTOR_BODY, b"secret", "sha256") == VECTOR_SHA256


def test_v2_decides_when_present_v1_otherwise_and_any_secret_verifies() -> None:
    secrets = [b"old", b"secret"]
    v1, v2 = {"agora-signature": VECTOR_SHA1}, {"agora-signature-v2": VECTOR_SHA256}
    assert signature_problem(VECTOR_BODY, v2, secrets) is None
    assert signature_problem(VECTOR_BODY, v1, secrets) is None
    assert signature_problem(VECTOR_BODY, {**v1, "agora-signature-v2": "00"}, secrets) == (
        "agora-signature-v2",
        "signature does not match",
    )
    assert signature_problem(VECTOR_BODY, v2, [b"old"]) is not None
    assert signature_problem(VECTOR_BODY, {}, secrets) is not None
    assert signature_problem(VECTOR_BODY, v2, []) is not None


@pytest.mark.parametrize(
    "header, digest", [("Agora-Signature-V2", VECTOR_SHA256), ("Agora-Signature", VECTOR_SHA1)]
)
async def test_the_documented_vector_is_accepted_with_a_rotated_secret(
    make_settings: MakeSettings, header: str, digest: str
) -> None:
    app = create_app(make_settings(agora_ncs_secret="new-one,secret"))
    async with running(app) as client:
        response = await client.post(
            "/webhooks/agora", content=VECTOR_BODY, headers={header: digest}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"ok": True, "seq": 1, "duplicate": False}
        (event,) = await store_of(app).read_log()
        assert event.type == "agora.unknown.10" and event.dedup_key.startswith("4eb720f0")


@pytest.mark.parametrize(
    "headers, field",
    [
        ({}, "Agora-Signature-V2"),
        ({"Agora-Signature-V2": "0" * 64}, "agora-signature-v2"),
        ({"Agora-Signature": VECTOR_SHA1}, "agora-signature"),  # signed with another secret
    ],
)
async def test_unsigned_or_badly_signed_is_401_and_stores_nothing(
    app: Starlette, client: httpx.AsyncClient, headers: dict[str, str], field: str
) -> None:
    response = await client.post("/webhooks/agora", content=VECTOR_BODY, headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert error_of(response)["field"] == field
    assert await store_of(app).read_log() == []


async def test_with_no_secret_configured_every_callback_is_401(make_settings: MakeSettings) -> None:
    async with running(create_app(make_settings(agora_ncs_secret=""))) as client:
        response = await post(client, notification("n1"))
        assert response.status_code == 401
        assert "no notification secret" in error_of(response)["message"]


async def test_verification_can_be_turned_off(make_settings: MakeSettings) -> None:
    app = create_app(make_settings(agora_ncs_secret="", agora_ncs_verify="false"))
    async with running(app) as client:
        response = await client.post("/webhooks/agora", content=encode(notification("n1")))
        assert response.status_code == 200


# -- bad input --------------------------------------------------------------------------------


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    for body in (b"{not json", b"\xff\xfe", b""):
        response = await client.post("/webhooks/agora", content=body, headers=signed(body))
        assert response.status_code == 400, body
        assert error_of(response)["code"] == "bad_json"


@pytest.mark.parametrize(
    "document, field",
    [
        ([1, 2], "body"),
        ({"productId": 3, "eventType": 1, "payload": {}}, "noticeId"),
        ({"noticeId": "n", "eventType": 1, "payload": {}}, "productId"),
        ({"noticeId": "n", "productId": 3, "eventType": 1, "payload": "x"}, "payload"),
    ],
)
async def test_json_that_is_not_a_notification_is_422_naming_the_field(
    app: Starlette, client: httpx.AsyncClient, document: Any, field: str
) -> None:
    response = await post(client, document)
    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid"
    assert error_of(response)["field"] == field
    assert await store_of(app).read_log() == []


async def test_a_declared_oversized_body_is_413_before_reading(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/webhooks/agora", content=b"{}", headers={"Content-Length": str(64 * 1024 + 1)}
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"


async def test_an_endless_streamed_body_is_cut_at_the_limit(client: httpx.AsyncClient) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 1
            yield b"x" * 4096

    response = await client.post("/webhooks/agora", content=endless())
    assert response.status_code == 413
    assert sent <= 64 // 4 + 2  # it stopped reading right after the limit


async def test_a_body_at_the_limit_is_read(make_settings: MakeSettings) -> None:
    async with running(create_app(make_settings(max_body_bytes=2048))) as client:
        document = notification("n1", details={"msgName": "x", "pad": ""})
        padding = 2048 - len(encode(document))
        document["payload"]["details"]["pad"] = "p" * padding
        assert len(encode(document)) == 2048
        assert (await post(client, document)).status_code == 200
        document["payload"]["details"]["pad"] += "p"
        assert (await post(client, document)).status_code == 413


# -- what is stored ---------------------------------------------------------------------------


async def test_a_notification_is_stored_as_received(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    document = notification("n1", event_type=42, channel="room-9", sid="sid-9", sequence=7)
    response = await post(client, document)
    assert response.json() == {"ok": True, "seq": 1, "duplicate": False}
    (event,) = await store_of(app).read_log()
    assert (event.source, event.dedup_key, event.type) == (
        "agora",
        "n1",
        "agora.recorder_slice_start",
    )
    assert (event.room, event.session) == ("room-9", "sid-9")
    assert event.occurred_at == datetime.fromtimestamp(1_700_000_000.007, UTC)
    assert event.payload == document  # sid, eventType and sequence as received


@pytest.mark.parametrize(
    "encoding, text",
    [
        ("utf-8", '{ "noticeId": "n1", "productId": 3, "eventType": 1, "payload": {"é": 1} }'),
        ("utf-8-sig", '{"noticeId": "n2", "productId": 3, "eventType": 1, "payload": {}}'),
        ("utf-16", '{"noticeId": "n3", "productId": 3, "eventType": 1, "payload": {"é": 2}}'),
    ],
)
async def test_the_body_is_kept_verbatim_whatever_its_encoding(
    app: Starlette, client: httpx.AsyncClient, tmp_path: Path, encoding: str, text: str
) -> None:
    """UTF-8 text is stored as it came (spacing too, a byte-order mark dropped); other encodings
    as the decoded JSON."""
    body = text.encode(encoding)
    response = await client.post("/webhooks/agora", content=body, headers=signed(body))
    assert response.status_code == 200
    (event,) = await store_of(app).read_log()
    assert event.payload == json.loads(text)
    with sqlite3.connect(tmp_path / "events.db") as raw:
        (stored,) = raw.execute("SELECT payload FROM events").fetchone()
    assert (stored == text) is (encoding != "utf-16")
    assert json.loads(stored) == json.loads(text)


async def test_the_same_notice_twice_is_stored_once(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    first = await post(client, notification("n1"))
    again = await post(client, notification("n1", sequence=3), header="Agora-Signature")
    assert first.status_code == again.status_code == 200
    assert again.json() == {"ok": True, "seq": first.json()["seq"], "duplicate": True}
    assert len(await store_of(app).read_log()) == 1


@pytest.mark.parametrize("event_type, product", [(777, 3), (5, 99), (109, 1)])
async def test_unknown_event_types_are_stored(
    app: Starlette, client: httpx.AsyncClient, event_type: int, product: int
) -> None:
    response = await post(client, notification("n1", event_type=event_type, product_id=product))
    assert response.status_code == 200
    (event,) = await store_of(app).read_log()
    assert event.type == f"agora.unknown.{event_type}"


async def test_console_health_checks_are_answered_and_make_no_room(
    app: Starlette,
    client: httpx.AsyncClient,
) -> None:
    recording = notification("h1", channel="test_webhook", uid="12121212", sid="test-sid")
    rtc = {
        "noticeId": "h2",
        "productId": 1,
        "eventType": 103,
        "payload": {"channelName": "test_webhook", "uid": 12121212, "clientSeq": 1, "ts": 1},
    }
    for document in (recording, rtc):
        response = await post(client, document)
        assert response.status_code == 200 and not response.json()["duplicate"]
    events = await store_of(app).read_log()
    assert [(e.type, e.room, e.session) for e in events] == [("agora.healthcheck", None, None)] * 2
    for projection in ("rooms", "sessions", "presence"):
        assert await store_of(app).rows(projection) == []


async def test_a_store_failure_is_503_so_agora_retries(make_settings: MakeSettings) -> None:
    async with running(create_app(make_settings(), projections=[Boom(always=True)])) as client:
        response = await post(client, notification("n1"))
        assert response.status_code == 503
        assert error_of(response)["code"] == "unavailable"


# -- the on_event hook ------------------------------------------------------------------------


async def test_on_event_hears_new_events_only_and_never_delays_the_answer(
    make_settings: MakeSettings,
) -> None:
    heard: list[Event] = []
    release = asyncio.Event()

    async def slow_hook(event: Event) -> None:
        heard.append(event)
        await release.wait()  # would hang the request if the webhook awaited it

    def broken_hook(event: Event) -> None:
        raise RuntimeError("hook bug")

    app = create_app(make_settings(), on_event=slow_hook)
    app.state.context.subscribe(broken_hook)
    async with running(app) as client:
        assert (await post(client, notification("n1"))).status_code == 200
        assert (await post(client, notification("n1"))).status_code == 200
        assert [e.dedup_key for e in heard] == ["n1"]
        release.set()


# -- the rest of the app ----------------------------------------------------------------------


async def test_health_readiness_and_json_errors(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    missing = await client.get("/nope")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong_method = await client.get("/webhooks/agora")
    assert (
        wrong_method.status_code == 405 and error_of(wrong_method)["code"] == "method_not_allowed"
    )


async def test_readyz_is_503_when_the_store_is_gone(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/other.db", ())
    await store.close()
    async with running(create_app(make_settings(), store=store)) as client:
        response = await client.get("/readyz")
        assert response.status_code == 503 and error_of(response)["code"] == "not_ready"
        assert (await client.get("/healthz")).status_code == 200


async def test_request_ids_are_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert len(made.headers["x-request-id"]) == 32
    assert made.headers["x-request-id"] != (await client.get("/healthz")).headers["x-request-id"]


async def test_metrics_count_webhooks_batches_and_events(client: httpx.AsyncClient) -> None:
    await post(client, notification("n1"))
    await post(client, notification("n1"))
    await client.post("/webhooks/agora", content=b"{}")
    text = (await client.get("/metrics")).text
    assert 'webhook_requests_total{outcome="accepted",source="agora"} 1.0' in text
    assert 'webhook_requests_total{outcome="duplicate",source="agora"} 1.0' in text
    assert 'webhook_requests_total{outcome="unauthorized",source="agora"} 1.0' in text
    assert 'events_appended_total{source="agora"} 1.0' in text
    assert "store_batch_size_count 2.0" in text
    assert "event_append_seconds_count 2.0" in text
    assert "store_sync_seconds_count 2.0" in text


async def test_the_loop_beats_as_often_as_configured(make_settings: MakeSettings) -> None:
    """``LOOP_BEAT_SECONDS`` reaches the watchdog: 20 beats come well within a second at
    5 ms (at the default 100 ms they would take two)."""
    app = create_app(make_settings(loop_beat_seconds=0.005))
    registry = app.state.context.metrics.registry
    async with running(app):
        deadline = time.monotonic() + 1.0
        while (registry.get_sample_value("event_loop_lag_seconds_count") or 0) < 20:
            assert time.monotonic() < deadline, "the loop beat less often than configured"
            await asyncio.sleep(0.01)  # beats are time itself: poll until enough have come


async def test_two_apps_in_one_process_keep_separate_metrics(make_settings: MakeSettings) -> None:
    async with running(create_app(make_settings())) as one:
        await post(one, notification("n1"))
        other = create_app(make_settings())  # not started: it has its own registry anyway
        metrics = other.state.context.metrics.registry
        assert (
            metrics.get_sample_value(
                "webhook_requests_total", {"source": "agora", "outcome": "accepted"}
            )
            is None
        )
