"""``POST /webhooks/storage``: auth, S3/MinIO/R2 shapes, dedup, bad input stores nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from reconcilers.projections import PROJECTIONS
from service.config import Settings
from service.runtime import create_app
from service.store import ObservableStore, open_store
from tests.catalog_harness import HOOK, WEBHOOK_SECRET, s3_event
from tests.helpers import running

R2 = {"account": "3f4b", "action": "PutObject", "bucket": "bucket",
      "object": {"key": "rec/red flower.mp4", "size": 65536, "eTag": "c846"},
      "eventTime": "2024-05-24T19:36:44.379Z"}
MINIO = {"EventName": "s3:ObjectCreated:Put", "Key": "bucket/path/to/object.mp4",
         "Records": [{"eventVersion": "2.0", "eventSource": "minio:s3",
                      "eventTime": "2024-05-24T19:36:44Z", "eventName": "s3:ObjectCreated:Put",
                      "s3": {"bucket": {"name": "bucket"},
                             "object": {"key": "path%2Fto%2Fobject.mp4", "size": 123,
                                        "eTag": "e", "sequencer": "17A"}}}]}
GOOD = json.loads(s3_event("k", 1, "01"))["Records"][0]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, ObservableStore]]:
    store = await open_store(f"sqlite:///{tmp_path / 'hook.db'}", PROJECTIONS)
    settings = Settings(storage_webhook_secret=[WEBHOOK_SECRET, "rotated"])  # type: ignore[list-item]
    try:
        async with running(create_app(settings, store=store)) as client:
            yield client, store
    finally:
        await store.close()


Env = tuple[httpx.AsyncClient, ObservableStore]


async def test_s3_event_is_stored_once_and_folded(env: Env) -> None:
    client, store = env
    body = s3_event("rec/red flower.m3u8", 42, "0055AED6DCD90281E5")
    first = await client.post("/webhooks/storage", content=body, headers=HOOK)
    again = await client.post("/webhooks/storage", content=body, headers=HOOK)
    assert first.json() == {"ok": True, "stored": 1, "duplicates": 0}
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    (event,) = await store.read_log()
    assert event.source == "storage" and event.payload["key"] == "rec/red flower.m3u8"
    row = await store.get_row("storage_objects", "bucket/rec/red flower.m3u8")
    assert row is not None and row.data["present"] and row.data["size"] == 42


async def test_minio_and_r2_shapes(env: tuple[httpx.AsyncClient, ObservableStore]) -> None:
    client, store = env
    auth = {"Authorization": "Bearer rotated"}
    assert (await client.post("/webhooks/storage", json=MINIO, headers=auth)).status_code == 200
    batch = {"messages": [{"id": "m1", "body": R2}, {"id": "m2", "body": R2}]}
    r = await client.post("/webhooks/storage", json=batch, headers=auth)
    assert r.json() == {"ok": True, "stored": 1, "duplicates": 1}, "same R2 fields: a duplicate"
    assert await store.get_row("storage_objects", "bucket/path/to/object.mp4") is not None
    row = await store.get_row("storage_objects", "bucket/rec/red flower.mp4")
    assert row is not None and row.data["size"] == 65536
    deleted = {**R2, "action": "DeleteObject", "object": {"key": "rec/red flower.mp4"},
               "eventTime": "2024-05-24T19:40:00Z"}
    await client.post("/webhooks/storage", json=deleted, headers=auth)
    row = await store.get_row("storage_objects", "bucket/rec/red flower.mp4")
    assert row is not None and not row.data["present"]


async def test_test_event_and_head_are_answered_and_not_stored(
    env: tuple[httpx.AsyncClient, ObservableStore],
) -> None:
    client, store = env
    test = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "bucket"}
    assert (await client.post("/webhooks/storage", json=test, headers=HOOK)).status_code == 200
    assert (await client.head("/webhooks/storage", headers=HOOK)).status_code == 200
    assert (await client.head("/webhooks/storage")).status_code == 401
    assert await store.read_log() == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"},
                                     {"Authorization": WEBHOOK_SECRET + "x"}])
async def test_unauthenticated_is_401_and_stores_nothing(
    env: tuple[httpx.AsyncClient, ObservableStore], headers: dict[str, str],
) -> None:
    client, store = env
    r = await client.post("/webhooks/storage", content=s3_event("k", 1, "01"), headers=headers)
    assert r.status_code == 401 and r.json()["error"]["field"] == "Authorization"
    assert await store.read_log() == []


@pytest.mark.parametrize(("body", "status", "field"), [
    (b"{not json", 400, "body"),
    (json.dumps({"Records": "x"}).encode(), 422, "Records"),
    (json.dumps({"Records": [GOOD, {}]}).encode(), 422, "Records[1].eventName"),
    (json.dumps({**R2, "object": {"key": "k", "size": -1}}).encode(), 422, "body.object.size"),
    (json.dumps({"hello": 1}).encode(), 422, "body"),
])
async def test_bad_input_names_the_field_and_stores_nothing(
    env: tuple[httpx.AsyncClient, ObservableStore], body: bytes, status: int, field: str,
) -> None:
    client, store = env
    r = await client.post("/webhooks/storage", content=body, headers=HOOK)
    assert r.status_code == status and r.json()["error"]["field"] == field, r.text
    assert await store.read_log() == []


async def test_body_limit(env: tuple[httpx.AsyncClient, ObservableStore]) -> None:
    client, _ = env
    r = await client.post("/webhooks/storage", content=b" " * (70 * 1024), headers=HOOK)
    assert r.status_code == 413
