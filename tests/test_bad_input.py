"""Bad input, generated: every parser answers a 4xx (never a 5xx) and stores nothing it rejects.

What ``tests/test_webhook_agora.py`` already covers (unsigned or badly signed, malformed JSON,
non-notification JSON, declared and streamed oversized bodies, duplicates) is not repeated here.
Added: hypothesis against the signed webhook body and the rooms API body, tampered signatures,
deeply nested JSON, oversized API bodies, and a slow client next to normal traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.config import Settings
from service.runtime import build_app
from tests.helpers import SECRET, encode, notification, running, signed
from tests.procs import Server, clean_env, free_port

TOKEN = "bad-input-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STORAGE = {
    "default": {"kind": "s3", "bucket": "b", "access_key_id": "AK", "secret_access_key": "S"}
}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def service_settings(db: Path) -> Settings:
    return Settings.from_env(
        {},
        database_url=f"sqlite:///{db}",
        agora_ncs_secret=SECRET,
        api_tokens={TOKEN: "acme"},
        storage_profiles=STORAGE,
        # nothing listens there: a reconcile pass fails fast, and the parsers are what we test
        agora_api_base_url=f"http://127.0.0.1:{free_port()}",
    )


class Service:
    """The whole app in process, its lifespan and client on a portal thread's event loop (a
    module-wide app: hypothesis runs each example synchronously), and its log, read-only."""

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient, db: Path) -> None:
        self.portal = portal
        self.client = client
        self.db = db

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.portal.call(functools.partial(self.client.post, path, **kw))

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.portal.call(functools.partial(self.client.put, path, **kw))

    def max_seq(self) -> int:
        """The last seq of what came in (the reconciler keeps logging its own retries)."""
        query = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE source != 'reconciler'"
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as conn:
            (seq,) = conn.execute(query).fetchone()
        return int(seq)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    db = tmp_path_factory.mktemp("bad-input") / "events.db"
    app = build_app(service_settings(db))
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(running(app)) as client,
    ):
        yield Service(portal, client, db)


# -- strategies --------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
NOTIFICATION_KEYS = ["noticeId", "productId", "eventType", "notifyMs", "sid", "payload"]
PAYLOAD_KEYS = ["cname", "uid", "sid", "sequence", "sendts", "serviceType", "details"]


@st.composite
def mutated_notifications(draw: st.DrawFn) -> Any:
    """A real notification with fields dropped or replaced by random JSON, or random JSON."""
    if draw(st.booleans()):
        return draw(json_values)
    doc = notification(f"fuzz-{draw(st.uuids())}", event_type=draw(st.sampled_from([3, 40, 41])))
    for key in draw(st.lists(st.sampled_from(NOTIFICATION_KEYS), max_size=3)):
        if draw(st.booleans()):
            doc.pop(key, None)
        else:
            doc[key] = draw(json_values)
    for key in draw(st.lists(st.sampled_from(PAYLOAD_KEYS), max_size=3)):
        if isinstance(doc.get("payload"), dict):
            doc["payload"][key] = draw(json_values)
    return doc


SPEC_FIELDS = {
    "state": st.sampled_from(["recording", "stopped", "paused", ""]) | json_values,
    "provider": st.sampled_from(["agora", "cloudflare"]) | json_values,
    "mode": st.sampled_from(["mix", "individual", "web", "audio"]) | json_values,
    "channel": st.text(max_size=70) | json_values,
    "storage": st.sampled_from(["default", "other"]) | json_values,
    "options": st.dictionaries(
        st.sampled_from(["recordingConfig", "token", "storageConfig", "x"]), json_values
    )
    | json_values,
    "recovery": st.sampled_from(["standard", "aggressive"]) | json_values,
    "own_channel": json_values,
    "max_segment_seconds": st.integers() | json_values,
}
api_bodies = st.fixed_dictionaries({}, optional=SPEC_FIELDS) | json_values


# -- webhooks ---------------------------------------------------------------------------------


@FUZZ
@given(document=mutated_notifications())
def test_any_signed_webhook_body_is_200_or_4xx_and_rejects_store_nothing(
    service: Service, document: Any
) -> None:
    body = json.dumps(document).encode()
    before = service.max_seq()
    response = service.post("/webhooks/agora", content=body, headers=signed(body))
    assert response.status_code in (200, 400, 422), response.text
    if response.status_code != 200:
        assert service.max_seq() == before


@FUZZ
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_a_tampered_body_under_a_valid_signature_is_401(
    service: Service, position: int, flip: int
) -> None:
    body = bytearray(encode(notification("tamper-me", sequence=7)))
    headers = signed(bytes(body))
    body[position % len(body)] ^= flip
    before = service.max_seq()
    response = service.post("/webhooks/agora", content=bytes(body), headers=headers)
    assert response.status_code == 401
    assert service.max_seq() == before


def test_a_replayed_signature_on_another_notice_is_401(service: Service) -> None:
    first = encode(notification("replay-1"))
    assert service.post("/webhooks/agora", content=first, headers=signed(first)).is_success
    other = encode(notification("replay-2"))
    before = service.max_seq()
    response = service.post("/webhooks/agora", content=other, headers=signed(first))
    assert response.status_code == 401 and service.max_seq() == before
    again = service.post("/webhooks/agora", content=first, headers=signed(first))
    assert again.json()["duplicate"] is True and service.max_seq() == before


@pytest.mark.parametrize("path", ["/webhooks/agora", "/v1/rooms/deep/recording"])
def test_deeply_nested_json_is_4xx(service: Service, path: str) -> None:
    body = b"[" * 30_000 + b"]" * 30_000  # under the size limit, over the parser's recursion
    before = service.max_seq()
    if path.startswith("/webhooks"):
        response = service.post(path, content=body, headers=signed(body))
    else:
        response = service.put(path, content=body, headers=AUTH)
    assert response.status_code == 400, response.text
    assert service.max_seq() == before


# -- rooms API --------------------------------------------------------------------------------


@FUZZ
@given(body=api_bodies, room=st.sampled_from(["fuzz-a", "fuzz-b"]))
def test_any_rooms_api_body_is_2xx_or_4xx_and_rejects_store_nothing(
    service: Service, body: Any, room: str
) -> None:
    before = service.max_seq()
    content = json.dumps(body, allow_nan=False).encode()
    response = service.put(f"/v1/rooms/{room}/recording", content=content, headers=AUTH)
    assert response.status_code in (200, 201, 409, 422), response.text
    if response.status_code >= 400:
        assert service.max_seq() == before
        assert set(response.json()) == {"error"}


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_an_oversized_api_body_is_413_and_stores_nothing(service: Service, declared: bool) -> None:
    big = json.dumps({"state": "recording", "options": {"x": "a" * 200_000}}).encode()
    before = service.max_seq()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    content: Any = big if declared else chunks()
    response = service.put("/v1/rooms/huge/recording", content=content, headers=AUTH)
    assert response.status_code == 413
    assert service.max_seq() == before


# -- a slow client, against a real server -------------------------------------------------------


@pytest.mark.slow
async def test_a_slow_client_does_not_block_other_requests(tmp_path: Path) -> None:
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path}/events.db",
        AGORA_NCS_SECRET=SECRET,
        API_TOKENS=f"{TOKEN}:acme",
        STORAGE_PROFILES=json.dumps(STORAGE),
        AGORA_API_BASE_URL=f"http://127.0.0.1:{free_port()}",
        LOG_LEVEL="WARNING",
    )
    server = Server.recctl_serve(env, tmp_path / "server.log")
    writer: asyncio.StreamWriter | None = None
    try:
        await server.wait_healthy()
        port = int(server.url.rsplit(":", 1)[1])
        body = encode(notification("slow-1"))
        head = (
            f"POST /webhooks/agora HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Agora-Signature-V2: {signed(body)['Agora-Signature-V2']}\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + body[:10])  # then stall mid-body
        await writer.drain()
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=5) as client:
            for i in range(5):
                started = time.monotonic()
                other = encode(notification(f"fast-{i}"))
                ok = await client.post("/webhooks/agora", content=other, headers=signed(other))
                put = await client.put(f"/v1/rooms/fast-{i}/recording", json={})
                assert ok.status_code == 200 and put.status_code == 201
                assert time.monotonic() - started < 2.0
        for i in range(10, len(body)):  # the slow client finishes, a byte at a time
            writer.write(body[i : i + 1])
            await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        assert status_line.startswith(b"HTTP/1.1 200")
    finally:
        if writer is not None:
            writer.close()
        server.stop()
