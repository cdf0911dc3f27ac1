"""The HTTP plumbing both provider clients share (``reconcilers.providers.http``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport

from reconcilers.outcomes import Retryable
from reconcilers.providers.agora.client import AgoraClient, AgoraConfig, Reply
from reconcilers.providers.http import (
    connection_pool,
    decode_json,
    default_timeout,
    network_transport,
    retry_after,
    segment,
)


def test_a_segment_cannot_change_the_route() -> None:
    assert segment("a/b c?") == "a%2Fb%20c%3F"
    assert segment("rec-1_2.x~") == "rec-1_2.x~"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(200, json={"a": 1}), {"a": 1}),
        (httpx.Response(200, json=[1, 2]), {"value": [1, 2]}),
        (httpx.Response(502, text="Bad Gateway"), {"text": "Bad Gateway"}),
        (httpx.Response(502, text="x" * 600), {"text": "x" * 500}),
        (httpx.Response(204), {}),
    ],
)
def test_decode_json_never_raises(response: httpx.Response, expected: dict[str, object]) -> None:
    assert decode_json(response) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), ("3", 3.0), ("-1", 0.0), ("soon", None)]
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    headers = {} if value is None else {"retry-after": value}
    assert retry_after(httpx.Response(429, headers=headers)) == expected


async def test_a_shared_client_is_not_ours_to_close() -> None:
    timeout = default_timeout(10.0)
    assert timeout.connect == 5.0 and timeout.read == 10.0
    async with httpx.AsyncClient() as shared:
        assert connection_pool(shared, None, timeout) == (shared, False)
        with pytest.raises(ValueError, match="either http or transport"):
            connection_pool(shared, httpx.MockTransport(lambda r: httpx.Response(200)), timeout)
    pool, owned = connection_pool(None, None, default_timeout(2.0))
    assert owned and pool.timeout.connect == 2.0
    await pool.aclose()


# -- the network transport, over real loopback sockets ------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    return head, await reader.readexactly(length)


def agora(base_url: str, timeout: float = 5.0) -> AgoraClient:
    return AgoraClient(
        AgoraConfig("app", "key-id", "key-secret", base_url=base_url, timeout=timeout)
    )


def test_the_network_pool_is_aiohttp_unless_a_proxy_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(network_transport(), AiohttpTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert isinstance(network_transport(), httpx.AsyncHTTPTransport)


async def test_calls_reuse_one_connection_and_carry_auth_and_body() -> None:
    seen: list[tuple[bytes, bytes]] = []
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                seen.append(await read_request(reader))
                body = b'{"resourceId":"r-1"}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
        writer.close()

    async with tcp_server(handler) as url:
        c = agora(url)
        replies = [await c.acquire("room a", "7", {"resourceExpiredHour": 24}) for _ in range(3)]
        await c.aclose()
    assert all(isinstance(r, Reply) and r.body == {"resourceId": "r-1"} for r in replies)
    assert connections == 1
    head, body = seen[0]
    assert head.startswith(b"POST /v1/apps/app/cloud_recording/acquire HTTP/1.1\r\n")
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if line)
    headers = {name.lower(): value for name, value in fields.items()}
    assert headers[b"authorization"] == b"Basic " + base64.b64encode(b"key-id:key-secret")
    assert json.loads(body) == {
        "cname": "room a",
        "uid": "7",
        "clientRequest": {"resourceExpiredHour": 24},
    }


async def test_network_failures_are_retryable_outcomes() -> None:
    hang = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await hang.wait()  # never answers: the read timeout fires
        writer.close()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"res')
        writer.close()  # mid-body

    async with tcp_server(silent) as url:
        c = agora(url, timeout=0.3)
        timed_out = await c.query("r", "s", "mix")
        await c.aclose()
        hang.set()
    async with tcp_server(hang_up) as url:
        c = agora(url)
        cut = await c.query("r", "s", "mix")
        await c.aclose()
    closed_port = url  # the server is gone: nothing listens there now
    c = agora(closed_port)
    refused = await c.query("r", "s", "mix")
    await c.aclose()
    assert isinstance(timed_out, Retryable) and timed_out.code == "timeout"
    assert isinstance(cut, Retryable) and cut.code == "transport"
    assert isinstance(refused, Retryable) and refused.code == "transport"
