"""A lean HTTP/1.1 load generator: keep-alive connections on asyncio streams, one request in
flight per connection. httpx's pool costs more CPU per request than the servers under test do
on this 2-core machine, so with it the benchmarks measured the client; this measures servers.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


# --- The intake bench's engine: no event loop at all ----------------------------------------
# Even the asyncio client above costs ~200 µs of CPU a request in the open-loop phase (a task
# and a timer per request): more than the bare endpoint it measures, on a 2-core machine where
# client and servers share the CPUs. ``blast`` drives plain non-blocking sockets with one
# selector, sends pre-built bytes, and reads just enough of each answer to know it ended.

Raw = list[bytes]


@dataclass
class Blast:
    """What one run of ``blast`` saw: a latency per request (ms), when each was due (s from
    the start, same order), non-200 answers, and how late the client itself sent each request
    (ms, in the order sent): latency it adds, which the servers did not cause."""

    latencies_ms: list[float]
    due_s: list[float]
    errors: int
    seconds: float
    sent_late_ms: list[float] = field(default_factory=list)


def raw_requests(url: str, path: str, items: Sequence[tuple[bytes, Mapping[str, str]]]) -> Raw:
    """Each request as the exact bytes to send (HTTP/1.1, keep-alive)."""
    host = urlsplit(url).netloc
    out: Raw = []
    for body, headers in items:
        head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        out.append(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return out


class _Conn:
    __slots__ = ("buf", "sock", "started")

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf, self.started = sock, b"", 0.0

    def answer(self) -> int | None:
        """The status once a whole answer is buffered (and drop it from the buffer)."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        length = 0
        for line in self.buf[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buf) < end + 4 + length:
            return None
        status = int(self.buf[9:12])
        self.buf = self.buf[end + 4 + length :]
        return status


def blast(url: str, requests: Raw, connections: int, rate: float | None = None) -> Blast:
    """Send every request over ``connections`` keep-alive sockets, one in flight on each.

    ``rate=None`` is a closed loop: each connection sends its next request as soon as it has
    the last answer. With a ``rate`` (requests/s) it is an open loop: request ``i`` is due at
    ``i / rate`` and its latency counts from then, not from when a connection was free (as
    wrk2 does: no coordinated omission)."""
    parts = urlsplit(url)
    # epoll: its timeout is in whole milliseconds, so a paced request may leave up to ~1 ms
    # after it was due, and that counts as latency (``Blast.sent_late_ms`` says how much).
    # ``select()`` times to the microsecond but wakes the client for every send as well as
    # every answer: at 2,300/s it cost 107-121 µs of CPU a request instead of 50-57, CPU the
    # servers under test lose on 2 cores (in the intake's paced phase it was itself up to
    # 11.5 ms late at p99). It did not make the intake's tail better: p99 within 10 ms in 2 of
    # 5 full runs against 3 of 5 on epoll, interleaved.
    selector = selectors.DefaultSelector()
    conns: list[_Conn] = []
    for _ in range(connections):
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = _Conn(sock)
        conns.append(conn)
        selector.register(sock, selectors.EVENT_READ, conn)
    idle = deque(conns)  # first in, first out: every connection stays warm (keep-alive timeout)
    latencies: list[float] = []
    due_s: list[float] = []
    sent_late: list[float] = []
    errors = 0
    now = time.perf_counter
    begin = now()
    sent = 0
    total = len(requests)

    def send(conn: _Conn, due: float) -> None:
        nonlocal sent
        conn.started = due
        sent_late.append((now() - due) * 1000)
        conn.sock.sendall(requests[sent])  # small: fits the socket buffer at once
        sent += 1

    try:
        if rate is None:
            while idle and sent < total:
                send(idle.popleft(), now())
        while len(latencies) < total:
            timeout: float | None = None
            if rate is not None and sent < total:
                due = begin + sent / rate
                while sent < total and idle and due <= now():
                    send(idle.popleft(), due)
                    due = begin + sent / rate
                if sent < total and idle:
                    timeout = max(0.0, due - now())
            for key, _ in selector.select(timeout):
                conn = key.data
                chunk = conn.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed a connection")
                conn.buf += chunk
                status = conn.answer()
                if status is None:
                    continue
                latencies.append((now() - conn.started) * 1000)
                due_s.append(conn.started - begin)
                errors += status != 200
                if rate is None and sent < total:
                    send(conn, now())
                else:
                    idle.append(conn)
        return Blast(latencies, due_s, errors, now() - begin, sent_late)
    finally:
        selector.close()
        for conn in conns:
            conn.sock.close()
