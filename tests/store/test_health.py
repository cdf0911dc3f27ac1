"""Issue 20, Medium 8 and a Low: appends have a deadline, the store says when it cannot write,
and a restarted writer takes no write before it is open.

A frozen file system is a writer that stops answering: here the writer process is stopped with
SIGSTOP. Appends then fail with ``AppendTimedOut`` (the caller answers 503 and the sender
retries; nothing is acknowledged that is not durable) and ``write_problem`` says so, until the
writer runs again.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconcilers.events import NewEvent
from service.store import SqliteStore
from service.store.errors import AppendTimedOut
from service.store.sqlite.host import ProcessHost


def new(key: str) -> NewEvent:
    return NewEvent("api", key, "t", {}, room="r1")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "events.db", writer_process=True,
                                    append_timeout=0.5)
    yield opened
    await opened.close()


def pid_of(store: SqliteStore) -> int:
    assert isinstance(store.host, ProcessHost) and store.host.pid is not None
    return store.host.pid


async def test_a_frozen_writer_times_appends_out_and_is_reported(store: SqliteStore) -> None:
    await store.append(new("before"))
    assert store.write_problem() is None
    pid = pid_of(store)
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(AppendTimedOut):
            await store.append(new("frozen"))
        problem = store.write_problem()
        assert problem is not None, "a commit under way too long, or none since the timeout"
    finally:
        os.kill(pid, signal.SIGCONT)
    again = await store.append(new("frozen"))  # the sender's retry: durable, once
    assert store.write_problem() is None
    keys = [e.dedup_key for e in await store.read_log()]
    assert keys == ["before", "frozen"] and again.event.seq == 2


async def test_a_restarted_writer_takes_no_write_before_it_is_open(tmp_path: Path) -> None:
    """The writer restart marked the new child alive before it was open: appends sent in
    between were answered "the writer is not open" (2 x 503 in 11,165 requests)."""
    store = await SqliteStore.open(tmp_path / "events.db", writer_process=True)
    try:
        await restarts(store)
    finally:
        await store.close()


async def restarts(store: SqliteStore) -> None:
    """Kill the writer five times while 20 writers append without pause: an append may fail
    with the child that died under it, never with one that is not open yet."""
    await store.append(new("first"))
    host = store.host
    assert isinstance(host, ProcessHost)
    failures: list[BaseException] = []
    done = asyncio.Event()

    async def writer(n: int) -> None:
        i = 0
        while not done.is_set():
            i += 1
            try:
                await store.append(new(f"w{n}-{i}"))
            except Exception as exc:
                failures.append(exc)

    writers = [asyncio.create_task(writer(n)) for n in range(20)]
    try:
        for _ in range(5):
            starts = host.starts
            os.kill(pid_of(store), signal.SIGKILL)
            while True:  # until the next child is up (the writers' appends start it)
                if host.starts > starts and host.alive():
                    break
                await asyncio.sleep(0.01)  # polling interval
            await store.append(new(f"after-{starts}"))
    finally:
        done.set()
        await asyncio.gather(*writers)
    assert not [f for f in failures if "not open" in str(f)], failures[:3]
    assert all("exited" in str(f) or "gone" in str(f) for f in failures), failures[:3]


async def test_the_service_answers_503_and_is_unready_while_the_disk_is_frozen(
    tmp_path: Path,
) -> None:
    """``/readyz`` ran ``SELECT 1`` on a reader: "ready" through 30 s of disk-full and a 25 s
    frozen file system, while webhooks hung with no bound and ``PUT`` answered 500 with a
    traceback. Now appends give up after ``STORE_APPEND_TIMEOUT_SECONDS`` with a 503 and
    ``Retry-After``, ``/readyz`` is 503 until a probe append gets through."""
    from service.config import Settings
    from service.runtime import build_app
    from tests.helpers import SECRET, encode, notification, running, signed
    from tests.test_security import STORAGE, TOKENS

    app = build_app(Settings.from_env(
        {}, database_url=f"sqlite:///{tmp_path}/events.db", agora_ncs_secret=SECRET,
        api_tokens=TOKENS, storage_profiles=STORAGE, store_append_timeout_seconds=0.5,
        agora_api_base_url="http://127.0.0.1:9",
    ))
    auth = {"Authorization": f"Bearer {next(iter(TOKENS))}"}
    async with running(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        store = app.state.context.store
        pid = pid_of(store)
        os.kill(pid, signal.SIGSTOP)
        try:
            put = await client.put("/v1/rooms/r1/recording", json={}, headers=auth)
            assert put.status_code == 503, put.text
            assert put.json()["error"]["code"] == "unavailable"
            assert put.headers["retry-after"] == "1"
            body = encode(notification("frozen-1"))
            hook = await client.post("/webhooks/agora", content=body, headers=signed(body))
            assert hook.status_code == 503 and hook.headers["retry-after"] == "1"
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
        finally:
            os.kill(pid, signal.SIGCONT)
        assert (await client.get("/readyz")).status_code == 200
        again = await client.post("/webhooks/agora", content=body, headers=signed(body))
        assert again.status_code == 200, "the resend is stored (or found) once the disk is back"
