"""The catalog's test world: a moto S3 server on loopback, and the recordings API mounted on
the in-process reconciler world of ``tests/e2e_harness.py`` (same store, same clock)."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
from moto.server import ThreadedMotoServer
from starlette.routing import Route

from reconcilers.engine import QueryRequest, Reconciler
from reconcilers.events import Event, Store
from reconcilers.workqueue import Done, Result
from service.api import recordings
from service.api.errors import ApiError, api_error_handler
from service.api.read_models import RecordingViews
from service.api.rooms import RoomsApi
from service.config import Settings, StorageProfile
from service.runtime import create_app
from service.storage.s3 import S3Storage

TOKEN, OTHER_TOKEN = "token-acme-000001", "token-globex-0001"
WEBHOOK_SECRET = "storage-webhook-secret"
BUCKET = "bucket"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OTHER = {"Authorization": f"Bearer {OTHER_TOKEN}"}
HOOK = {"Authorization": f"Bearer {WEBHOOK_SECRET}", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A real S3 API on 127.0.0.1 (moto's server mode); yields its endpoint URL."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        yield endpoint
    finally:
        # moto keeps its buckets in this process's memory: a later server would find them.
        httpx.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
        server.stop()


def profile(endpoint: str) -> StorageProfile:
    return StorageProfile.model_validate(
        {
            "kind": "s3",
            "bucket": BUCKET,
            "endpoint": endpoint,
            "access_key_id": "AKIATESTKEY",
            "secret_access_key": "storage-secret-for-tests",
        }
    )


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIATESTKEY",
        aws_secret_access_key="storage-secret-for-tests",
    )


class Scheduler:
    """Records enqueued keys: tests drive reconcile passes by hand."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def notify(self, event: Event) -> None:
        if event.room:
            self.keys.append(event.room)

    def timing(self, key: str) -> tuple[None, None]:
        return None, None


@dataclass
class Runner:
    """Runs what the API asks of a key's worker at once: only the provider queries (tests drive
    reconcile passes by hand)."""

    reconciler: Reconciler
    asked: list[QueryRequest] = field(default_factory=list)

    async def run_key(self, key: str, query: QueryRequest | None = None) -> Result:
        if query is not None:
            self.asked.append(query)
            await self.reconciler.query(query)
        return Done()


@dataclass
class Catalog:
    client: httpx.AsyncClient
    api: recordings.RecordingsApi


@contextlib.asynccontextmanager
async def catalog_app(
    store: Store, reconciler: Reconciler, endpoint: str, *, expiry: int = 600
) -> AsyncIterator[Catalog]:
    settings = Settings(
        api_tokens={TOKEN: "acme", OTHER_TOKEN: "globex"},
        storage_profiles={"default": profile(endpoint)},
        storage_webhook_secret=[WEBHOOK_SECRET],  # type: ignore[list-item]
    )
    views = RecordingViews(store, {"default": BUCKET})
    ledger = recordings.CatalogLedger(views)  # as the runtime wires it
    rooms = RoomsApi(
        store, reconciler, reconciler.providers, settings.api_tokens, ["default"], Scheduler(),
        reconciler.clock, ledger,
    )
    storage = S3Storage(settings.storage_profiles["default"])
    api = recordings.RecordingsApi(
        store, rooms, views, ledger, Runner(reconciler), reconciler.config.uids,
        {"default": storage}, settings.api_tokens, expiry, reconciler.clock,
    )
    app = create_app(
        settings,
        store=store,
        extra_routes=[
            *recordings.routes(lambda: api),
            Route("/v1/rooms/{room}/recording", rooms.get, methods=["GET"]),
            Route("/v1/rooms/{room}/recording", rooms.put, methods=["PUT"]),
        ],
        exception_handlers={ApiError: api_error_handler},
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            try:
                yield Catalog(client, api)
            finally:
                storage.close()


def s3_event(key: str, size: int, sequencer: str, name: str = "ObjectCreated:Put") -> bytes:
    """An S3 notification for one object, key form-encoded as S3 sends it."""
    from urllib.parse import quote_plus

    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-01-06T10:30:00.000Z",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
            "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": "e",
                       "sequencer": sequencer},
        },
    }
    return json.dumps({"Records": [record]}).encode()


@contextlib.contextmanager
def bucket() -> Iterator[str]:
    """A moto server with the bucket made: the ``s3`` fixture of the catalog tests."""
    with moto_server() as endpoint:
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
