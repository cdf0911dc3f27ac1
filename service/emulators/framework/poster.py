"""A lean keep-alive HTTP/1.1 client for the emulators' callbacks.

An emulated recording emits about a dozen notifications; sending them with httpx cost more CPU
than the whole emulated provider (about 1.5 ms a request on this 2-core machine), and on one
machine that CPU is taken from the service under test. Callbacks are small POSTs to one or two
loopback URLs, so plain asyncio streams with a few idle connections per host do: one write, one
status line, headers, a body of known length (or chunked).

``https`` URLs, which an emulator pointed at a real deployment may use, go through httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

_Host = tuple[str, int]


@dataclass(frozen=True)
class PostResult:
    """What a callback sender needs of an answer (httpx's ``Response`` has the same field)."""

    status_code: int


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, head: bytes, body: bytes) -> tuple[int, bool]:
        """``(status, keep_alive)``; the answer's body is read and dropped."""
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length, chunked, keep_alive = 0, False, not status_line.startswith(b"HTTP/1.0")
        while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value
            elif name == "connection":
                keep_alive = value != "close"
        if chunked:
            while size := int((await self.reader.readline()).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)
            while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
        elif length:
            await self.reader.readexactly(length)
        return status, keep_alive

    def close(self) -> None:
        self.writer.close()


class Poster:
    """POSTs with keep-alive connections, at most ``max_idle`` kept per host."""

    def __init__(self, timeout: float = 10.0, max_idle: int = 64) -> None:
        self._timeout = timeout
        self._max_idle = max_idle
        self._idle: dict[_Host, list[_Connection]] = {}
        self._https: httpx.AsyncClient | None = None

    async def post(
        self,
        url: str,
        *,
        content: bytes,
        headers: Mapping[str, str],
    ) -> PostResult | httpx.Response:
        """POST ``content``; the caller bounds the time taken (``asyncio.wait_for``)."""
        parts = urlsplit(url)
        if parts.scheme != "http":
            if self._https is None:
                self._https = httpx.AsyncClient(timeout=self._timeout)
            return await self._https.post(url, content=content, headers=dict(headers))
        host = (parts.hostname or "127.0.0.1", parts.port or 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {path} HTTP/1.1", f"Host: {host[0]}:{host[1]}"]
        lines += [f"Content-Length: {len(content)}", "Content-Type: application/json"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        idle = self._idle.setdefault(host, [])
        while idle:  # a kept connection the server may have closed since: then the next one
            conn = idle.pop()
            try:
                status, keep_alive = await conn.post(head, content)
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                conn.close()
                continue
            except BaseException:  # cancelled (a deadline): the connection is in an unknown state
                conn.close()
                raise
            return self._keep(host, conn, status, keep_alive)
        reader, writer = await asyncio.open_connection(*host)
        conn = _Connection(reader, writer)
        try:
            return self._keep(host, conn, *await conn.post(head, content))
        except BaseException:
            conn.close()
            raise

    def _keep(self, host: _Host, conn: _Connection, status: int, keep_alive: bool) -> PostResult:
        idle = self._idle.setdefault(host, [])
        if keep_alive and len(idle) < self._max_idle:
            idle.append(conn)
        else:
            conn.close()
        return PostResult(status)

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
                with contextlib.suppress(Exception):
                    await conn.writer.wait_closed()
        self._idle.clear()
        if self._https is not None:
            await self._https.aclose()
            self._https = None
