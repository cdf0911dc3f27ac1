"""A lean HTTP/1.1 load generator: keep-alive connections on asyncio streams, one request in
flight per connection. httpx's pool costs more CPU per request than the servers under test do
on this 2-core machine, so with it the benchmarks measured the client; this measures servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from urllib.parse import urlsplit


class Connection:
    """One keep-alive connection; ``post`` sends a request and reads the whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self._reader, self._writer, self._host = reader, writer, host

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> int:
        return await self.request("POST", path, body, headers)

    async def request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> int:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self._host}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = await self._reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length:
            await self._reader.readexactly(length)
        return status

    def close(self) -> None:
        self._writer.close()


class Pool:
    """``size`` connections to ``url``, lent out one request at a time."""

    def __init__(self, url: str, size: int) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._size = size
        self._idle: asyncio.Queue[Connection] = asyncio.Queue()
        self._all: list[Connection] = []

    async def __aenter__(self) -> Pool:
        for _ in range(self._size):
            reader, writer = await asyncio.open_connection(self._host, self._port)
            conn = Connection(reader, writer, f"{self._host}:{self._port}")
            self._all.append(conn)
            self._idle.put_nowait(conn)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for conn in self._all:
            conn.close()

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> int:
        return await self.request("POST", path, body, headers)

    async def request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> int:
        conn = await self._idle.get()
        try:
            return await conn.request(method, path, body, headers)
        finally:
            self._idle.put_nowait(conn)
