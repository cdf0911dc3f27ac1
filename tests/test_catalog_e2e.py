"""The catalog end to end: API start → reconciler records on the Agora emulator → API stop →
files uploaded to a real S3 API (moto on loopback) with matching S3 events → ready →
presigned download fetched over HTTP → archive to GLACIER (confirmed) → soft delete."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.catalog_harness import (
    AUTH,
    BUCKET,
    HOOK,
    OTHER,
    catalog_app,
    moto_server,
    s3_client,
    s3_event,
)
from tests.e2e_harness import world
from tests.procs import ROOT


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with moto_server() as endpoint:
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint


async def test_a_recording_from_start_to_archive(tmp_path: Path, s3: str) -> None:
    async with world(tmp_path) as w, catalog_app(w.store, w.reconciler, s3) as cat:
        c = cat.client
        w.emu.join("standup", 11)
        body = {"options": {"recordingConfig": {"maxIdleTime": 30}}}
        r = await c.post("/api/v1/rooms/standup/recordings/start", json=body, headers=AUTH)
        assert r.status_code == 201, r.text
        rid = r.json()["data"]["id"]
        assert r.json()["data"]["status"] == "recording"
        again = await c.post("/api/v1/rooms/standup/recordings/start", headers=AUTH)
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"

        key = "acme/standup"
        await w.run(key, passes=4)
        assert len(w.live_tasks("standup")) == 1
        await w.tick(60)

        r = await c.post("/api/v1/rooms/standup/recordings/stop", headers=AUTH)
        assert r.status_code == 200 and r.json()["data"]["status"] == "processing"
        await w.run(key, passes=3)
        assert not w.live_tasks("standup")

        got = (await c.get(f"/api/v1/recordings/{rid}", headers=AUTH)).json()["data"]
        assert got["status"] == "processing"
        r = await c.get(f"/api/v1/recordings/{rid}/download", headers=AUTH)
        assert r.json()["status"] == "processing" and "still being processed" in r.json()["message"]

        # The provider uploads its files; the bucket tells us through S3 events.
        segments = await w.store.rows("recording_segments", room="agora/standup")
        names = sorted({n for s in segments for n in s.data["files"]})
        assert names, "the provider reported files"
        client = s3_client(s3)
        uploaded: dict[str, bytes] = {}
        for i, name in enumerate(names):
            slice_key = name.rpartition(".")[0] + "_20260106103000000.ts"
            for n, (k, blob) in enumerate(((name, b"#EXTM3U\n" * 8), (slice_key, b"\x47" * 4096))):
                client.put_object(Bucket=BUCKET, Key=k, Body=blob)
                uploaded[k] = blob
                event = s3_event(k, len(blob), f"00{i:02d}{n:02d}AB")
                hook = await c.post("/webhooks/storage", content=event, headers=HOOK)
                assert hook.status_code == 200, hook.text
        dup = await c.post("/webhooks/storage", content=event, headers=HOOK)
        assert dup.json()["duplicates"] == 1

        got = (await c.get(f"/api/v1/recordings/{rid}", headers=AUTH)).json()["data"]
        assert got["status"] == "ready"
        assert got["size_bytes"] == sum(len(b) for b in uploaded.values())
        assert got["duration_seconds"] >= 60
        assert got["room"] == {"id": "standup", "name": "standup"}

        r = (await c.get(f"/api/v1/recordings/{rid}/download", headers=AUTH)).json()
        assert r["status"] == "ready" and r["provider"] == "s3"
        async with httpx.AsyncClient() as http:
            fetched = await http.get(r["download_url"])
        assert fetched.status_code == 200 and fetched.content == uploaded[names[0]]
        assert (await c.get(f"/api/v1/recordings/{rid}", headers=OTHER)).status_code == 404

        r = await c.post(f"/api/v1/recordings/{rid}/archive", headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["data"]["status"] == "archived"
        for k in uploaded:
            assert client.head_object(Bucket=BUCKET, Key=k)["StorageClass"] == "GLACIER"
        r = await c.post(f"/api/v1/recordings/{rid}/archive", headers=AUTH)
        assert r.status_code == 400

        r = await c.delete(f"/api/v1/recordings/{rid}", headers=AUTH)
        assert r.json()["data"]["deleted"] is True and r.json()["data"]["id"] == rid
        assert (await c.get(f"/api/v1/recordings/{rid}", headers=AUTH)).status_code == 404
        listed = (await c.get("/api/v1/recordings", headers=AUTH)).json()
        assert listed == {"data": [], "meta": {"total": 0, "limit": 20, "offset": 0}}
        row = await w.store.get_row("recordings", f"acme/{rid}")
        assert row is not None and row.data["deleted_ms"], "soft delete keeps the data"


def test_the_service_loads_boto3_only_when_it_first_touches_a_bucket(s3: str) -> None:
    """boto3 and an S3 client cost the service 26 MB: built with a storage profile it has
    neither; the first call to the bucket brings both, and works. A fresh interpreter, since
    this one has boto3 loaded."""
    storage = {
        "kind": "s3",
        "bucket": BUCKET,
        "endpoint": s3,
        "access_key_id": "AKIATESTKEY",
        "secret_access_key": "storage-secret-for-tests",
    }
    code = (
        "import asyncio, sys\n"
        "from service.config import Settings, StorageProfile\n"
        "from service.runtime import build_app\n"
        "from service.storage.s3 import S3Storage\n"
        f"profile = StorageProfile.model_validate({storage!r})\n"
        "settings = Settings(storage_profiles={'default': profile})\n"
        "build_app(settings)\n"
        "storage = S3Storage(profile)\n"
        "assert 'boto3' not in sys.modules, 'built'\n"
        "assert asyncio.run(storage.head('nothing/here')) is None\n"
        "assert 'boto3' in sys.modules, 'used'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
