"""The whole system on loopback, in this process: an S3 API server (moto), the Agora and
Cloudflare emulators, and the service wired to them with a generated API token and a storage
profile. ``recctl demo`` tells a story against it; ``recctl dev`` leaves it for you to call.

The emulated recorders do not upload anything, so :class:`Uploads` stands in for that: when an
Agora recording task ends it puts the task's files in the bucket and posts the bucket's
notification to ``/webhooks/storage``, as a real bucket's forwarder would. The catalog then
reaches ``ready`` and serves download URLs and archives, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import uvicorn
from starlette.types import ASGIApp

from service.commands.common import UserError
from service.config import Settings

BUCKET = "recordings"
S3_REGION = "us-east-1"
UPLOAD_POLL_SECONDS = 0.5


def listening_socket(port: int = 0, host: str = "127.0.0.1") -> socket.socket:
    """A socket bound and listening now: its port is known before anything is started, and no
    other process can take it meanwhile. Raises :class:`UserError` when the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror} (try --port 0)") from None
    sock.listen(2048)
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


# Longer than any client's idle expiry (httpx's is 5 s, uvicorn's own default too): with equal
# timers the server may close an idle connection just as the client reuses it, and that request
# fails with "Server disconnected without sending a response" (a flaky demo in CI).
KEEP_ALIVE_SECONDS = 75


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to its host: several run in one process, and the
    host stops them in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, sock: socket.socket) -> AsyncIterator[str]:
    """Serve ``app`` on ``sock`` until the block ends; yields its base URL once it listens."""
    server = _Server(
        uvicorn.Config(
            app,
            log_config=None,
            lifespan="on",
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError(f"server on port {port_of(sock)} stopped during start-up")
            await asyncio.sleep(0.02)  # polling start-up, bounded by the server's own checks
        yield f"http://127.0.0.1:{port_of(sock)}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.contextmanager
def s3_server(port: int = 0) -> Iterator[str]:
    """A real S3 API on 127.0.0.1 (moto's server mode); yields its endpoint URL."""
    try:
        from moto.server import ThreadedMotoServer
    except ModuleNotFoundError:
        raise UserError(
            "the playground's S3 API server needs moto: pip install 'moto[server]' "
            "(make installs it)"
        ) from None
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        server.start()
    except OSError as exc:
        raise UserError(f"cannot start the S3 API server on port {port}: {exc}") from None
    try:
        host, bound = server.get_host_and_port()
        yield f"http://{host}:{bound}"
    finally:
        server.stop()


def s3_client(endpoint: str, key: str, secret: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=S3_REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def remove_bucket(s3: Any) -> None:
    """Empty and delete the playground's bucket: moto keeps its buckets in the memory of the
    process that serves them, and a later server in this process would find it."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})
    s3.delete_bucket(Bucket=BUCKET)


def s3_notification(key: str, size: int, sequencer: str) -> bytes:
    """The S3 event a bucket sends for one new object (its key form-encoded, as S3 does)."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": S3_REGION,
        "eventTime": "1970-01-01T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": size,
                "eTag": "0",
                "sequencer": sequencer,
            },
        },
    }
    return json.dumps({"Records": [record]}).encode()


@dataclass
class Uploads:
    """Stands in for the Agora recorders' uploads and the bucket's notifications: the files of
    every ended task go into the bucket (a playlist and one slice each), and each object's S3
    event is posted to the service."""

    emulator: httpx.AsyncClient
    service: httpx.AsyncClient
    s3: Any
    webhook_secret: str
    done: set[str] = field(default_factory=set)
    uploaded: int = 0

    async def run(self) -> None:
        while True:
            await self.once()
            await asyncio.sleep(UPLOAD_POLL_SECONDS)  # polling the emulator, as a forwarder

    async def once(self) -> None:
        response = await self.emulator.get("/_emulator/tasks", params={"live": "false"})
        response.raise_for_status()
        for task in response.json():
            if task["live"] or task["sid"] in self.done:
                continue
            for file in task["files"]:
                name = str(file["name"])
                slice_key = name.rpartition(".")[0] + f"_{file.get('start_ms') or 0}.ts"
                for key, body in ((name, b"#EXTM3U\n#EXT-X-ENDLIST\n"), (slice_key, b"G" * 4096)):
                    await self.put(key, body)
            self.done.add(task["sid"])

    async def put(self, key: str, body: bytes) -> None:
        await asyncio.to_thread(self.s3.put_object, Bucket=BUCKET, Key=key, Body=body)
        self.uploaded += 1
        event = s3_notification(key, len(body), f"{self.uploaded:016X}")
        response = await self.service.post(
            "/webhooks/storage",
            content=event,
            headers={
                "Authorization": f"Bearer {self.webhook_secret}",
                "Content-Type": "application/json",
            },
        )
        response.raise_for_status()


def fresh_log(db: Path) -> None:
    """Remove the SQLite file and its companions: this run's story only."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


@dataclass
class Playground:
    """Where everything listens, and the credentials it was given."""

    db: Path
    tenant: str
    token: str
    service_url: str
    agora_url: str
    cloudflare_url: str
    s3_url: str
    settings: Settings
    uploads: Uploads

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.db}"


@dataclass(frozen=True)
class Ports:
    service: int = 0
    agora: int = 0
    cloudflare: int = 0
    s3: int = 0


@contextlib.asynccontextmanager
async def playground(
    db: Path,
    *,
    tenant: str,
    token: str | None = None,
    ports: Ports = Ports(),
    query_interval_seconds: int = 10,
) -> AsyncIterator[Playground]:
    """Start it all (a fresh event log at ``db``), yield it, stop it all in reverse."""
    from service.emulators.agora import AgoraEmulator, EmulatorConfig
    from service.emulators.cloudflare import CloudflareEmulator
    from service.emulators.cloudflare.config import EmulatorConfig as CloudflareConfig
    from service.runtime import build_app

    fresh_log(db)
    token = token or secrets.token_urlsafe(18)
    ncs_secret, key, secret, cf_token, s3_key, s3_secret, hook_secret = (
        secrets.token_hex(16) for _ in range(7)
    )
    sockets = [listening_socket(p) for p in (ports.service, ports.agora, ports.cloudflare)]
    service_sock, agora_sock, cloudflare_sock = sockets
    service_port = port_of(service_sock)
    try:
        emulator = AgoraEmulator(
            EmulatorConfig(
                customer_key=key,
                customer_secret=secret,
                ncs_secret=ncs_secret,
                callback_url=f"http://127.0.0.1:{service_port}/webhooks/agora",
                seed=1,
            )
        )
        cloudflare = CloudflareEmulator(
            CloudflareConfig(
                api_token=cf_token,
                webhook_url=f"http://127.0.0.1:{service_port}/webhooks/cloudflare",
                seed=1,
            )
        )
        with s3_server(ports.s3) as s3_url, contextlib.ExitStack() as cleanup:
            s3 = s3_client(s3_url, s3_key, s3_secret)
            await asyncio.to_thread(s3.create_bucket, Bucket=BUCKET)
            cleanup.callback(remove_bucket, s3)
            settings = Settings.from_env(
                {},
                database_url=f"sqlite:///{db}",
                log_level="WARNING",
                agora_app_id=emulator.config.app_id,
                agora_customer_key=key,
                agora_customer_secret=secret,
                agora_ncs_secret=ncs_secret,
                agora_api_base_url=f"http://127.0.0.1:{port_of(agora_sock)}",
                api_tokens=f"{token}:{tenant}",
                storage_profiles={
                    "default": {
                        "kind": "s3",
                        "bucket": BUCKET,
                        "region": S3_REGION,
                        "endpoint": s3_url,
                        "access_key_id": s3_key,
                        "secret_access_key": s3_secret,
                    }
                },
                storage_webhook_secret=hook_secret,
                query_interval_seconds=query_interval_seconds,
                cloudflare_account_id=cloudflare.config.account_id,
                cloudflare_app_id=cloudflare.config.app_id,
                cloudflare_api_token=cf_token,
                cloudflare_api_base_url=f"http://127.0.0.1:{port_of(cloudflare_sock)}/client/v4",
                cloudflare_webhook_public_key=cloudflare.public_key_pem,
            )
            async with (
                serving(emulator.app, agora_sock) as agora_url,
                serving(cloudflare.app, cloudflare_sock) as cloudflare_url,
                serving(build_app(settings), service_sock) as service_url,
                httpx.AsyncClient(base_url=agora_url, timeout=10) as agora_client,
                httpx.AsyncClient(base_url=service_url, timeout=10) as service_client,
            ):
                uploads = Uploads(agora_client, service_client, s3, hook_secret)
                feeder = asyncio.create_task(uploads.run())
                try:
                    yield Playground(
                        db, tenant, token, service_url, agora_url, cloudflare_url, s3_url,
                        settings, uploads,
                    )
                finally:
                    feeder.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await feeder
    finally:
        for sock in sockets:
            sock.close()


def recctl_command() -> str:
    """How to run this recctl from the current directory, as a user would type it: ``recctl``
    when the shell finds this one, else its path (``.venv/bin/recctl``, relative when below
    the current directory), else ``python -m service.cli``."""
    script = Path(sys.executable).parent / "recctl"
    on_path = shutil.which("recctl")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "recctl"
    if not script.exists():
        return f"{sys.executable} -m service.cli"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path(os.getcwd())))
    return str(script)
