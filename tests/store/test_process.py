"""The SQLite writer in a child process: what a process adds to the store contract.

The contract itself runs against this host in ``test_contract.py`` (backend
``sqlite-process``). Here: the child dies and is replaced, a call it dies in fails rather than
hangs, it outlives neither its parent nor a Ctrl-C it should ignore, and the pipe's encoding of
an event gives back the same event.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcilers.events import Event, NewEvent, Row
from service.store import SqliteStore, StoreError
from service.store.sqlite.child import FRAME, unwire, wire
from service.store.sqlite.host import ProcessHost, _AnswerPipe
from tests.procs import ROOT


def new(key: str, type_: str = "t", **payload: object) -> NewEvent:
    return NewEvent("api", key, type_, dict(payload), room="r1")


class Stall:
    """A projection that, on a ``stall`` event, touches ``marker`` and then blocks: the test
    kills the writer while it is inside a call."""

    name = "stall"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def keys(self, event: Event) -> Sequence[str]:
        return ["x"]

    def apply(self, row: Row | None, event: Event) -> Row | None:
        if event.type == "stall":
            Path(self.marker).touch()
            time.sleep(60)  # the writer's own stand-in for a hung commit: killed long before
        return row


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(
        tmp_path / "events.db", [Stall(str(tmp_path / "stalled"))], writer_process=True
    )
    yield opened
    await opened.close()


def _host(store: SqliteStore) -> ProcessHost:
    assert isinstance(store.host, ProcessHost)
    return store.host


async def _wait_for(predicate: object, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone too: it runs nothing and holds no file.
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "Z"


async def test_the_writer_is_a_child_process_that_exits_with_the_store(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "events.db", writer_process=True)
    pid = _host(store).pid
    assert pid is not None and pid != os.getpid()
    await store.append(new("k1"))
    assert await store.synchronous() == 2
    await store.close()
    assert _gone(pid)


async def test_a_killed_writer_is_replaced_and_nothing_acknowledged_is_lost(
    store: SqliteStore,
) -> None:
    host = _host(store)
    first = await store.append(new("k1"))
    pid = host.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await _wait_for(lambda: not host.alive(), "the host to see its child die")

    second = await store.append(new("k2"))
    assert host.starts == 2 and host.pid != pid
    assert second.event.seq == first.event.seq + 1
    assert [e.dedup_key for e in await store.read_log()] == ["k1", "k2"]


async def test_a_call_in_flight_when_the_writer_dies_fails_instead_of_hanging(
    store: SqliteStore, tmp_path: Path
) -> None:
    host = _host(store)
    stalled = asyncio.create_task(store.append(new("k-stall", "stall")))
    await _wait_for((tmp_path / "stalled").exists, "the writer to enter the stalling call")
    queued = asyncio.create_task(store.append(new("k-next")))  # a batch pipelined behind it
    await _wait_for(lambda: store._in_flight == 2, "the second batch to be sent")
    assert host.pid is not None
    os.kill(host.pid, signal.SIGKILL)

    with pytest.raises(StoreError):
        await asyncio.wait_for(stalled, 10)
    with pytest.raises(StoreError):  # sent to the same child: it fails too, and alone
        await asyncio.wait_for(queued, 10)
    again = await store.append(new("k-after"))
    keys = [e.dedup_key for e in await store.read_log()]
    assert "k-stall" not in keys  # killed inside its transaction: never committed
    assert keys[-1] == "k-after" and again.event.seq == len(keys)


async def test_the_writer_ignores_a_ctrl_c_sent_to_the_process_group(store: SqliteStore) -> None:
    host = _host(store)
    assert host.pid is not None
    os.kill(host.pid, signal.SIGINT)
    os.kill(host.pid, signal.SIGTERM)
    await store.append(new("k1"))
    assert host.starts == 1 and host.alive()


async def test_no_task_stands_between_an_append_and_the_writer(store: SqliteStore) -> None:
    """Appends queued in one turn leave as one batch, and the answer resolves them in the
    pipe's callback: the only tasks are the callers' own (a task per hop was a turn of the
    event loop each, and under load every turn waits behind all the requests queued)."""
    before = asyncio.all_tasks()
    callers = [asyncio.create_task(store.append(new(f"k{i}"))) for i in range(5)]
    await asyncio.sleep(0)  # a turn: the callers queue their appends
    await asyncio.sleep(0)  # the next: the batch is sent, no task started for it
    assert store._in_flight == 1
    assert asyncio.all_tasks() - before == set(callers)
    appended = await asyncio.gather(*callers)
    assert [a.event.seq for a in appended] == [1, 2, 3, 4, 5]
    assert store.stats.batches == 1


@given(chunks=st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_answers_come_out_whole_whatever_pieces_the_pipe_gives(chunks: list[int]) -> None:
    bodies = [pickle.dumps((True, i)) * (1 + i % 4) for i in range(6)]
    stream = b"".join(FRAME.pack(len(b)) + b for b in bodies)
    received: list[bytes] = []
    ended: list[bool] = []
    pipe = _AnswerPipe(received.append, lambda: ended.append(True))
    offset = 0
    for size in chunks:
        pipe.data_received(stream[offset : offset + size])
        offset += size
        assert received == bodies[: len(received)]  # whole answers, in order, never a part
    pipe.data_received(stream[offset:])
    pipe.connection_lost(None)
    assert received == bodies and ended == [True]


def test_the_writer_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    db = str(tmp_path / "events.db")
    script = (
        "import asyncio, sys\n"
        "from service.store import SqliteStore\n"
        "async def main():\n"
        f"    store = await SqliteStore.open({db!r}, writer_process=True)\n"
        "    print('writer', store.host.pid, flush=True)\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        line = next(line for line in parent.stdout if line.startswith("writer "))
        child = int(line.split()[1])
        assert not _gone(child)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while not _gone(child):
        assert time.monotonic() < deadline, "the writer outlived its parent"
        time.sleep(0.01)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
_times = st.none() | st.datetimes(timezones=st.just(UTC))


@given(
    payload=st.dictionaries(st.text(max_size=5), _json, max_size=4),
    with_raw=st.booleans(),
    occurred_at=_times,
    received_at=_times,
    room=st.none() | st.text(max_size=6),
)
def test_an_event_crosses_the_pipe_unchanged(
    payload: dict[str, object],
    with_raw: bool,
    occurred_at: datetime | None,
    received_at: datetime | None,
    room: str | None,
) -> None:
    raw = json.dumps(payload, ensure_ascii=False) if with_raw else None
    event = NewEvent("agora", "k", "t", payload, room, "s", occurred_at, received_at, raw)
    back = unwire(wire(event))
    assert back == event and back.raw == raw
    if with_raw:
        assert wire(event)[3] is None  # the payload is not sent twice
