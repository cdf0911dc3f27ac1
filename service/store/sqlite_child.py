"""The SQLite writer's child process: the other end of :class:`.sqlite_host.ProcessHost`.

Length-prefixed pickles on stdin (calls) and stdout (answers), answered in order. Writes that
are already waiting together in the pipe are committed as ONE transaction (group commit at
the writer): the host sends batches ahead so the writer never waits for the event loop, and
when a commit is slow (a disk that slows from 0.3 to 2 ms an fsync, measured here) the batches
queued behind it would otherwise each pay an fsync of their own, and wait for every one before.
Kept apart from the host so that the child imports only what writing needs (the writer, the
projections): not the web stack, the log library or aiosqlite, which cost it ~10 MB and a
third of its start-up.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import signal
import struct
import sys
from typing import Any, BinaryIO

from reconcilers.events import Appended, Event, NewEvent
from service.store.errors import StoreError
from service.store.sqlite_writer import SqliteWriter

FRAME = struct.Struct("!I")
"""Every message: its length, then a pickle."""

MERGE_EVENTS = 4096
"""Most events in one merged transaction (the host's batches are capped too: this bounds what
a deep pipeline could pile up)."""

Wired = tuple[Any, ...]
Call = tuple[str, tuple[Any, ...]]


def wire(e: NewEvent) -> Wired:
    """A pending event for the pipe, as a plain tuple. With ``raw`` (a webhook body), the
    payload is not sent: it is the parse of ``raw``, which is also all the log keeps of it."""
    payload = None if e.raw is not None else e.payload
    return (
        e.source,
        e.dedup_key,
        e.type,
        payload,
        e.room,
        e.session,
        e.occurred_at,
        e.received_at,
        e.raw,
    )


def unwire(t: Wired) -> NewEvent:
    source, dedup_key, type_, payload, room, session, occurred_at, received_at, raw = t
    if raw is not None:
        payload = json.loads(raw)
    return NewEvent(source, dedup_key, type_, payload, room, session, occurred_at, received_at, raw)


def compact(results: list[Appended]) -> list[int | Event]:
    """A write's answer for the pipe: the seq of each new event (the parent has the rest of
    it), the stored copy for a duplicate."""
    return [r.event if r.duplicate else r.event.seq for r in results]


class Inbox:
    """The calls on a pipe, whole, in order; it can tell which have already arrived."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._ended = False

    def next(self, wait: bool = True) -> Call | None:
        """The next call; ``None`` at the end of the pipe, or (``wait=False``) when the next
        call has not arrived whole yet."""
        while (frame := self._frame()) is None:
            if self._ended or not self._fill(wait):
                return None
        call: Call = pickle.loads(frame)
        return call

    def _frame(self) -> bytes | None:
        if len(self._buffer) < FRAME.size:
            return None
        end = FRAME.size + FRAME.unpack_from(self._buffer)[0]
        if len(self._buffer) < end:
            return None
        frame = bytes(self._buffer[FRAME.size : end])
        del self._buffer[:end]
        return frame

    def _fill(self, wait: bool) -> bool:
        """Read what the pipe holds; without ``wait``, only if it holds something now."""
        if not wait and not select.select([self._fd], [], [], 0)[0]:
            return False
        chunk = os.read(self._fd, 1 << 16)
        if not chunk:
            self._ended = True
        self._buffer += chunk
        return bool(chunk)


def _answer(stream: BinaryIO, ok: bool, value: Any) -> None:
    try:
        data = pickle.dumps((ok, value), pickle.HIGHEST_PROTOCOL)
    except Exception:  # an exception that does not pickle still fails the call, by name
        data = pickle.dumps((False, StoreError(repr(value))), pickle.HIGHEST_PROTOCOL)
    stream.write(FRAME.pack(len(data)) + data)


def write_together(writer: SqliteWriter, calls: list[list[Wired]]) -> list[tuple[bool, Any]]:
    """Answer several write calls with one transaction. Each answer is ``(compact results,
    checkpoints, COMMIT seconds)``; the seconds are ``None`` for a call that rode on the
    transaction of the call before it (one fsync is reported once). If the transaction fails,
    each call is tried alone, so that a poison call fails no other."""
    try:
        results, _ = writer.write([unwire(t) for wired in calls for t in wired])
    except Exception as exc:
        if len(calls) == 1:
            return [(False, exc)]
        return [answer for wired in calls for answer in write_together(writer, [wired])]
    answers: list[tuple[bool, Any]] = []
    start = 0
    for i, wired in enumerate(calls):
        mine = results[start : start + len(wired)]
        start += len(wired)
        sync = writer.last_sync_seconds if i == 0 else None
        answers.append((True, (compact(mine), writer.checkpoints, sync)))
    return answers


def writes_waiting(inbox: Inbox, first: list[Wired]) -> tuple[list[list[Wired]], Call | None]:
    """``first`` and the write calls already in the pipe behind it; and the call that ended
    the run, when one has arrived that is not a write."""
    calls, count = [first], len(first)
    while count < MERGE_EVENTS and (call := inbox.next(wait=False)) is not None:
        if call[0] != "write":
            return calls, call
        calls.append(call[1][0])
        count += len(call[1][0])
    return calls, None


def serve(requests: int, answers: BinaryIO) -> None:
    """Answer calls until the pipe ``requests`` (a file descriptor) ends, then close the writer."""
    inbox = Inbox(requests)
    writer: SqliteWriter | None = None
    held: Call | None = None  # a call read while looking for writes to merge
    try:
        while (call := held or inbox.next()) is not None:
            held = None
            name, args = call
            if name == "write" and writer is not None:
                calls, held = writes_waiting(inbox, args[0])
                for ok, answer in write_together(writer, calls):
                    _answer(answers, ok, answer)
                answers.flush()
                continue
            try:
                if name == "open":
                    writer = SqliteWriter(*args)
                    writer.open()
                    value: Any = None
                elif writer is None:
                    raise StoreError("the writer is not open")
                elif name in ("replay", "synchronous", "checkpoint", "close"):
                    value = getattr(writer, name)()
                else:
                    raise StoreError(f"unknown call {name!r}")
            except Exception as exc:
                _answer(answers, False, exc)
            else:
                _answer(answers, True, value)
            answers.flush()
    except BrokenPipeError:  # the parent is gone: nobody is waiting for the answer
        pass
    finally:
        if writer is not None:
            writer.close()


def main() -> None:
    """The child's entry point. It ignores SIGINT and SIGTERM (a Ctrl-C reaches the whole
    process group; a commit must not die half way for it) and exits when stdin ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The protocol owns the stdout pipe: anything printed goes to stderr instead.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.fileno(), answers)
