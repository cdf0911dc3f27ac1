"""The emulators' lean callback client against a raw HTTP server: bodies of known length,
chunked bodies, ``Connection: close``, and a kept connection the server dropped meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from service.emulators.framework.poster import Poster

ANSWERS = {
    "/length": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "/chunked": b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "/close": b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "/drop": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
}


class RawServer:
    def __init__(self) -> None:
        self.connections = 0
        self.bodies: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        while request_line := await reader.readline():
            path = request_line.split()[1].decode()
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            self.bodies.append(await reader.readexactly(length))
            writer.write(ANSWERS[path])
            await writer.drain()
            if path in ("/close", "/drop"):
                break  # /drop: answers as keep-alive, then closes anyway
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[RawServer, str]]:
    raw = RawServer()
    listening = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield raw, f"http://127.0.0.1:{port}"


async def test_keep_alive_chunked_close_and_a_dropped_connection(
    server: tuple[RawServer, str],
) -> None:
    raw, base = server
    poster = Poster()
    try:
        post = poster.post
        assert (await post(f"{base}/length", content=b"a", headers={})).status_code == 200
        assert (await post(f"{base}/chunked", content=b"b", headers={})).status_code == 201
        assert raw.connections == 1  # kept alive across both
        assert (await post(f"{base}/close", content=b"c", headers={})).status_code == 503
        assert (await post(f"{base}/drop", content=b"d", headers={"X-A": "1"})).status_code == 200
        assert raw.connections == 2  # a new one after "Connection: close"
        # The server closed the kept connection after /drop: the next post reconnects.
        assert (await post(f"{base}/length", content=b"e", headers={})).status_code == 200
        assert raw.connections == 3
        assert raw.bodies == [b"a", b"b", b"c", b"d", b"e"]
    finally:
        await poster.aclose()


async def test_no_server_is_an_error_for_the_retry_policy() -> None:
    poster = Poster()
    with pytest.raises(OSError):
        await poster.post("http://127.0.0.1:9/x", content=b"{}", headers={})
    await poster.aclose()
