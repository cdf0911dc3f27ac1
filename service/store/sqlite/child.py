"""The SQLite writer's child process: the other end of :class:`.host.ProcessHost`.

Length-prefixed pickles on stdin (calls) and stdout (answers), one call answered before the
next is read. Kept apart from the host so that the child imports only what writing needs (the
writer, the projections): not the web stack, the log library or aiosqlite, which cost it
~10 MB and a third of its start-up.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import struct
import sys
from typing import Any, BinaryIO

from reconcilers.events import Appended, Event, NewEvent
from service.store.errors import StoreError
from service.store.sqlite.writer import SqliteWriter

FRAME = struct.Struct("!I")
"""Every message: its length, then a pickle."""

Wired = tuple[Any, ...]


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


def _read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (size,) = FRAME.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


def _answer(stream: BinaryIO, ok: bool, value: Any) -> None:
    try:
        data = pickle.dumps((ok, value), pickle.HIGHEST_PROTOCOL)
    except Exception:  # an exception that does not pickle still fails the call, by name
        data = pickle.dumps((False, StoreError(repr(value))), pickle.HIGHEST_PROTOCOL)
    stream.write(FRAME.pack(len(data)) + data)
    stream.flush()


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer calls until ``requests`` ends, then close the writer."""
    writer: SqliteWriter | None = None
    try:
        while (frame := _read_frame(requests)) is not None:
            name, args = pickle.loads(frame)
            try:
                if name == "open":
                    writer = SqliteWriter(*args)
                    writer.open()
                    value: Any = None
                elif writer is None:
                    raise StoreError("the writer is not open")
                elif name == "write":
                    (wired,) = args
                    results, _ = writer.write([unwire(t) for t in wired])
                    value = (compact(results), writer.checkpoints, writer.last_sync_seconds)
                elif name in ("replay", "synchronous", "checkpoint", "close"):
                    value = getattr(writer, name)()
                else:
                    raise StoreError(f"unknown call {name!r}")
            except Exception as exc:
                _answer(answers, False, exc)
            else:
                _answer(answers, True, value)
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
    serve(sys.stdin.buffer, answers)
