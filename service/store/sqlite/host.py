"""Where the SQLite writer runs: a thread of this process, or a child process of its own.

The writer's work (number the events, insert them, fold the projections, commit) is Python as
much as SQLite. On a thread it shares the event loop's GIL: measured at the intake, every
request then paid for the fold's Python and for the GIL hand-offs around each SQLite call
(~310-340 µs of CPU a request against ~215 + 70 µs split over two processes). A child process
takes the writer off the GIL; the loop only pickles each batch to a pipe and reads the answer
back (~2 µs an event each way). The thread stays for tools and tests, where a process more is
only start-up time.

The child is :mod:`.child`: calls in order over its stdin and stdout. It exits when
its stdin closes, which is also what happens when the parent is killed with -9.
"""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from subprocess import PIPE
from typing import Any, cast

from reconcilers.events import Appended, Event, NewEvent, Projection
from service.store.base import StoreClosed, StoreError, log
from service.store.fold import numbered
from service.store.sqlite.child import FRAME, wire
from service.store.sqlite.writer import Checkpoints, SqliteWriter

WriteResult = tuple[list[Appended], list[Event], Checkpoints, float]
"""A write's answers, its new events, the writer's background checkpoints so far, and how long
its COMMIT took (the fsync, timed beside the disk rather than across a thread or a pipe)."""

WriteDone = Callable[[WriteResult | BaseException], None]
"""Told, on the event loop, how a submitted write ended: its result, or why it failed."""


class WriterHost(ABC):
    """The :class:`SqliteWriter`'s calls, awaited from the event loop. Calls never overlap."""

    def __init__(self) -> None:
        self._submitted: set[asyncio.Task[WriteResult]] = set()

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def write(self, batch: Sequence[NewEvent]) -> WriteResult: ...

    def submit(self, batch: Sequence[NewEvent], done: WriteDone) -> None:
        """Start :meth:`write` and return at once; ``done`` gets its outcome. A host that can
        answer without a task (the process host) does so: see :meth:`ProcessHost.submit`."""
        task = asyncio.ensure_future(self.write(batch))
        self._submitted.add(task)

        def finished(task: asyncio.Task[WriteResult]) -> None:
            self._submitted.discard(task)
            if task.cancelled():
                done(StoreClosed("the write was cancelled"))
            elif (exc := task.exception()) is not None:
                done(exc)
            else:
                done(task.result())

        task.add_done_callback(finished)

    @abstractmethod
    async def checkpoint(self) -> tuple[int, int]: ...

    @abstractmethod
    async def replay(self) -> int: ...

    @abstractmethod
    async def synchronous(self) -> int: ...

    @abstractmethod
    async def close(self) -> None: ...

    def alive(self) -> bool:
        return True


class ThreadHost(WriterHost):
    """The writer on one thread of this process (``STORE_WRITER=thread``)."""

    def __init__(self, path: str, projections: Sequence[Projection], wal_bytes: int) -> None:
        super().__init__()
        self._writer = SqliteWriter(path, projections, wal_bytes)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        await self._run(self._writer.open)

    async def write(self, batch: Sequence[NewEvent]) -> WriteResult:
        results, new = await self._run(self._writer.write, batch)
        return results, new, replace(self._writer.checkpoints), self._writer.last_sync_seconds

    async def checkpoint(self) -> tuple[int, int]:
        return cast(tuple[int, int], await self._run(self._writer.checkpoint))

    async def replay(self) -> int:
        return cast(int, await self._run(self._writer.replay))

    async def synchronous(self) -> int:
        return cast(int, await self._run(self._writer.synchronous))

    async def close(self) -> None:
        try:
            await self._run(self._writer.close)
        finally:
            self._executor.shutdown()


Answer = Callable[[bool, Any], None]
"""A call's outcome, on the event loop: ``(True, value)`` or ``(False, exception)``."""

CHILD = "from service.store.sqlite.child import main; main()"


class _AnswerPipe(asyncio.Protocol):
    """The child's stdout. Each answer is handed on in the pipe's own callback, as soon as its
    last byte is read. (A StreamReader wakes a task instead, which is one turn of the event
    loop more; and under load every turn waits behind all the requests that came meanwhile.)"""

    def __init__(self, on_answer: Callable[[bytes], None], on_end: Callable[[], None]) -> None:
        self._on_answer = on_answer
        self._on_end = on_end
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= FRAME.size:
            end = FRAME.size + FRAME.unpack_from(buffer)[0]
            if len(buffer) < end:
                break
            body = bytes(buffer[FRAME.size : end])
            del buffer[:end]
            self._on_answer(body)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_end()


class ProcessHost(WriterHost):
    """The writer in a child process (``STORE_WRITER=process``, what ``recctl serve`` runs).

    Calls are pipelined: each is sent as soon as it is made and the child answers in order, so
    the next batch is waiting in the pipe when a commit ends, not behind the event loop's turn.
    A child that dies fails every call in flight (nothing it was committing is acknowledged; if
    it did commit, the sender's retry is a duplicate) and is started again on the next call.
    """

    def __init__(self, path: str, projections: Sequence[Projection], wal_bytes: int) -> None:
        super().__init__()
        self._init = (path, tuple(projections), wal_bytes)
        self._proc: subprocess.Popen[bytes] | None = None
        self._requests: asyncio.WriteTransport | None = None  # the child's stdin
        self._ended: asyncio.Future[None] | None = None  # its stdout closed: all answers given
        self._waiting: deque[Answer] = deque()  # calls sent, in order
        self._broken = False  # the child's answers ended: no call may be sent to it
        self._opened = False  # the child answered "open": it takes writes
        self._starting = asyncio.Lock()
        self.starts = 0  # how many children were started (tests watch restarts)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        """A child that is open: alive only once it answered "open" (issue 20: one marked
        alive as it started took writes before its pipe or its database was ready)."""
        return self._usable() and self._opened

    def _usable(self) -> bool:
        return self._proc is not None and not self._broken

    async def open(self) -> None:
        async with self._starting:
            await self._start()

    async def _start(self) -> None:
        if self._proc is not None:
            log.warning("sqlite writer process exited; starting another", pid=self._proc.pid)
            await self._stop()
        loop = asyncio.get_running_loop()
        proc = await asyncio.to_thread(  # forking a big process takes a while: not on the loop
            subprocess.Popen, [sys.executable, "-c", CHILD], stdin=PIPE, stdout=PIPE
        )
        assert proc.stdin is not None and proc.stdout is not None
        ended: asyncio.Future[None] = loop.create_future()
        self._proc, self._broken, self._ended, self._opened = proc, False, ended, False
        self.starts += 1
        try:
            self._requests, _ = await loop.connect_write_pipe(asyncio.Protocol, proc.stdin)
            pipe = _AnswerPipe(partial(self._answered, ended), partial(self._end, ended))
            await loop.connect_read_pipe(lambda: pipe, proc.stdout)
            await self._call_now("open", self._init)
            self._opened = True
        except BaseException:
            self._end(ended)
            await self._stop()
            raise
        log.debug("sqlite writer process started", pid=proc.pid)

    async def _call(self, name: str, *args: Any) -> Any:
        if not self.alive():
            async with self._starting:
                if not self.alive():
                    await self._start()
        return await self._call_now(name, args)

    def _call_now(self, name: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._send(name, args, partial(_settle, future))
        return future

    def _send(self, name: str, args: tuple[Any, ...], answer: Answer) -> None:
        """Queue the call's answer, then write the call: the order of ``_waiting`` is the order
        of the pipe."""
        requests = self._requests
        if not self._usable() or requests is None or requests.is_closing():
            raise StoreError(f"the sqlite writer process is gone (call {name!r})")
        data = pickle.dumps((name, args), pickle.HIGHEST_PROTOCOL)
        self._waiting.append(answer)
        requests.write(FRAME.pack(len(data)) + data)

    def _answered(self, ended: asyncio.Future[None], body: bytes) -> None:
        if ended.done():  # a child given up for dead: its calls have failed already
            return
        ok, value = pickle.loads(body)
        answer = self._waiting.popleft()
        try:
            answer(ok, value)
        except Exception:  # the pipe must go on: a failing receiver is its own problem
            log.exception("a writer call's receiver failed")

    def _end(self, ended: asyncio.Future[None]) -> None:
        """A child's stdout closed (it exited, or was killed): fail whatever it did not answer.
        ``ended`` tells which child: one replaced already has nothing left to fail."""
        if ended.done():
            return
        ended.set_result(None)
        if ended is not self._ended:
            return
        self._broken = True
        while self._waiting:
            answer = self._waiting.popleft()
            answer(False, StoreError("the sqlite writer process exited"))

    async def close(self) -> None:
        async with self._starting:
            try:
                if self.alive():
                    await self._call_now("close", ())
            finally:
                await self._stop()

    async def _stop(self) -> None:
        """Close the child's stdin (it exits on EOF) and reap it; kill it if it hangs."""
        proc = self._proc
        if proc is None:
            return
        if self._requests is not None:
            self._requests.close()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
        if self._ended is not None:
            await self._ended  # the child's stdout ends with it: any call left has failed

    def submit(self, batch: Sequence[NewEvent], done: WriteDone) -> None:
        """Write the batch to the pipe now; ``done`` runs in the pipe's callback when the answer
        arrives: no task, no turn of the event loop in between. (With no child, it takes
        :meth:`write`'s way, which starts one.)"""
        if not self.alive():
            super().submit(batch, done)
            return

        def answered(ok: bool, value: Any) -> None:
            done(self._results(batch, value) if ok else value)

        self._send("write", ([wire(e) for e in batch],), answered)

    async def write(self, batch: Sequence[NewEvent]) -> WriteResult:
        value = await self._call("write", [wire(e) for e in batch])
        return self._results(batch, value)

    @staticmethod
    def _results(batch: Sequence[NewEvent], value: Any) -> WriteResult:
        answers, checkpoints, sync_seconds = value
        results: list[Appended] = []
        new: list[Event] = []
        for pending, answer in zip(batch, answers, strict=True):
            if isinstance(answer, int):
                event = numbered(pending, answer)
                new.append(event)
                results.append(Appended(event, duplicate=False))
            else:
                results.append(Appended(answer, duplicate=True))
        return results, new, checkpoints, sync_seconds

    async def checkpoint(self) -> tuple[int, int]:
        return cast(tuple[int, int], await self._call("checkpoint"))

    async def replay(self) -> int:
        return cast(int, await self._call("replay"))

    async def synchronous(self) -> int:
        return cast(int, await self._call("synchronous"))


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
