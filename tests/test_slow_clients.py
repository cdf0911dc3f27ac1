"""Issue 20, Mediums 3 and 4: clients that hang up mid-body, send half a request, or nothing.

Over real sockets against ``recctl serve``: a disconnect is one count and no traceback (2,000 of
them used to hold the event loop 2.3 s); headers and bodies have deadlines; connections past
``HTTP_LIMIT_CONCURRENCY`` are answered 503. Each is visible in ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import SECRET, encode, notification, signed
from tests.procs import Server, clean_env

pytestmark = pytest.mark.slow

HALF_BODY = (
    b"POST /webhooks/agora HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b"Content-Length: 4096\r\n\r\n" + b'{"noticeId": "' + b"x" * 500
)


@contextlib.asynccontextmanager
async def service(tmp_path: Path, **env: str) -> AsyncIterator[Server]:
    server = Server.recctl_serve(
        clean_env(DATABASE_URL=f"sqlite:///{tmp_path}/events.db", AGORA_NCS_SECRET=SECRET,
                  LOG_LEVEL="INFO", **env),
        tmp_path / "server.log",
    )
    try:
        await server.wait_healthy()
        yield server
    finally:
        server.stop()


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def metric(server: Server, name: str) -> float:
    async with httpx.AsyncClient(base_url=server.url) as client:
        text = (await client.get("/metrics")).text
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def metric_reaches(server: Server, name: str, value: float, within: float = 20) -> float:
    """Poll ``/metrics`` until ``name`` is at least ``value`` (the server counts as it goes)."""
    deadline = time.monotonic() + within
    while True:
        seen = await metric(server, name)
        if seen >= value or time.monotonic() >= deadline:
            return seen
        await asyncio.sleep(0.1)  # polling interval


async def test_clients_hanging_up_mid_body_are_counted_not_logged(tmp_path: Path) -> None:
    async with service(tmp_path) as server:

        async def hang_up() -> None:
            _, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
            writer.write(HALF_BODY)
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        await asyncio.gather(*(hang_up() for _ in range(200)))
        assert await metric_reaches(server, "http_client_disconnects_total", 200) == 200
        async with httpx.AsyncClient(base_url=server.url) as client:
            body = encode(notification("after-the-storm"))
            ok = await client.post("/webhooks/agora", content=body, headers=signed(body))
            assert ok.status_code == 200, ok.text
        log = server.log()
        assert "Traceback" not in log and "unhandled error" not in log, log[-2000:]


@pytest.mark.parametrize("stack", ["uvloop", "asyncio"])  # httptools, h11: both guarded
async def test_headers_and_bodies_have_deadlines(tmp_path: Path, stack: str) -> None:
    async with service(tmp_path, SERVER_STACK=stack, HTTP_HEADER_TIMEOUT_SECONDS="1",
                       HTTP_BODY_TIMEOUT_SECONDS="1") as server:
        port = port_of(server)

        async def closed_after(sent: bytes) -> bytes:
            """Send ``sent``, then read until the server closes the connection."""
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(sent)
            await writer.drain()
            try:
                return await asyncio.wait_for(reader.read(), 30)
            finally:
                writer.close()

        silent = [closed_after(b"") for _ in range(10)]
        half_headers = [closed_after(b"POST /webhooks/agora HTTP/1.1\r\nHost: t\r\n")
                        for _ in range(10)]
        answers = await asyncio.gather(*silent, *half_headers)
        assert answers == [b""] * 20, "closed without an answer"
        assert await metric(server, "http_header_timeouts_total") == 20
        answer = await closed_after(HALF_BODY)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b'"code":"body_timeout"' in answer
        assert await metric(server, "http_body_timeouts_total") == 1
        assert "Traceback" not in server.log()


async def test_connections_past_the_limit_are_answered_503(tmp_path: Path) -> None:
    async with service(tmp_path, HTTP_LIMIT_CONCURRENCY="4") as server:
        idle = [await asyncio.open_connection("127.0.0.1", port_of(server)) for _ in range(4)]

        async def healthz_becomes(status: int) -> None:
            deadline = time.monotonic() + 20
            async with httpx.AsyncClient(base_url=server.url) as client:
                while (await client.get("/healthz")).status_code != status:
                    assert time.monotonic() < deadline, f"/healthz never answered {status}"
                    await asyncio.sleep(0.1)  # polling interval: the server accepts as it can

        await healthz_becomes(503)  # four idle connections held: a fifth is refused
        for _, writer in idle:
            writer.close()
        await healthz_becomes(200)
        assert await metric(server, "http_connections_open") <= 2, "closed ones are counted out"
