"""Where the SQLite writer runs: a thread of this process, or a child process of its own.

The writer's work (number the events, insert them, fold the projections, commit) is Python as
much as SQLite. On a thread it shares the event loop's GIL: measured at the intake, every
request then paid for the fold's Python and for the GIL hand-offs around each SQLite call
(~310-340 µs of CPU a request against ~215 + 70 µs split over two processes). A child process
takes the writer off the GIL; the loop only pickles each batch to a pipe and reads the answer
back (~2 µs an event each way). The thread stays for tools and tests, where a process more is
only start-up time.

The child is :mod:`.sqlite_child`: calls in order over its stdin and stdout. It exits when
its stdin closes, which is also what happens when the parent is killed with -9.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, cast

from reconcilers.events import Appended, Event, NewEvent, Projection
from service.store.base import StoreError, log
from service.store.sqlite_child import FRAME, wire
from service.store.sqlite_writer import Checkpoints, SqliteWriter, numbered

WriteResult = tuple[list[Appended], list[Event], Checkpoints, float]
"""A write's answers, its new events, the writer's background checkpoints so far, and how long
its COMMIT took (the fsync, timed beside the disk rather than across a thread or a pipe)."""


class WriterHost(ABC):
    """The :class:`SqliteWriter`'s calls, awaited from the event loop. Calls never overlap."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def write(self, batch: Sequence[NewEvent]) -> WriteResult: ...

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


class ProcessHost(WriterHost):
    """The writer in a child process (``STORE_WRITER=process``, what ``recctl serve`` runs).

    Calls are pipelined: each is sent as soon as it is made and the child answers in order, so
    the next batch is waiting in the pipe when a commit ends, not behind the event loop's turn.
    A child that dies fails every call in flight (nothing it was committing is acknowledged; if
    it did commit, the sender's retry is a duplicate) and is started again on the next call.
    """

    def __init__(self, path: str, projections: Sequence[Projection], wal_bytes: int) -> None:
        self._init = (path, tuple(projections), wal_bytes)
        self._proc: asyncio.subprocess.Process | None = None
        self._answers: asyncio.Task[None] | None = None
        self._waiting: deque[asyncio.Future[Any]] = deque()  # calls sent, in order
        self._broken = False  # the child's answers ended: no call may be sent to it
        self._starting = asyncio.Lock()
        self.starts = 0  # how many children were started (tests watch restarts)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and not self._broken and self._proc.returncode is None

    async def open(self) -> None:
        async with self._starting:
            await self._start()

    async def _start(self) -> None:
        if self._proc is not None:
            log.warning("sqlite writer process exited; starting another", pid=self._proc.pid)
            await self._stop()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from service.store.sqlite_child import main; main()",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._proc, self._broken = proc, False
        self._answers = asyncio.create_task(self._read_answers(proc), name="sqlite-writer-answers")
        self.starts += 1
        try:
            await self._send("open", self._init)
        except BaseException:
            await self._stop()
            raise
        log.debug("sqlite writer process started", pid=proc.pid)

    async def _call(self, name: str, *args: Any) -> Any:
        if not self.alive():
            async with self._starting:
                if not self.alive():
                    await self._start()
        return await self._send(name, args)

    def _send(self, name: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Queue the call's answer, then write the call: no await in between, so the order
        of ``_waiting`` is the order of the pipe."""
        proc = self._proc
        if proc is None or self._broken or proc.stdin is None or proc.stdin.is_closing():
            raise StoreError(f"the sqlite writer process is gone (call {name!r})")
        data = pickle.dumps((name, args), pickle.HIGHEST_PROTOCOL)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        proc.stdin.write(FRAME.pack(len(data)) + data)
        return future

    async def _read_answers(self, proc: asyncio.subprocess.Process) -> None:
        """Resolve the calls in order; when the child's stdout ends, fail whatever is left."""
        assert proc.stdout is not None
        try:
            while True:
                head = await proc.stdout.readexactly(FRAME.size)
                body = await proc.stdout.readexactly(FRAME.unpack(head)[0])
                ok, value = pickle.loads(body)
                future = self._waiting.popleft()
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._broken = True
            while self._waiting:
                future = self._waiting.popleft()
                if not future.done():
                    future.set_exception(StoreError("the sqlite writer process exited"))

    async def close(self) -> None:
        async with self._starting:
            try:
                if self.alive():
                    await self._send("close", ())
            finally:
                await self._stop()

    async def _stop(self) -> None:
        """Close the child's stdin (it exits on EOF) and reap it; kill it if it hangs."""
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._answers is not None:
            await self._answers  # ends at the child's EOF, failing any call left

    async def write(self, batch: Sequence[NewEvent]) -> WriteResult:
        wired = [wire(e) for e in batch]
        answers, checkpoints, sync_seconds = await self._call("write", wired)
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
