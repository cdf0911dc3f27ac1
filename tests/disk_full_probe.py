"""Run inside a private 3 MB tmpfs (see ``tests/test_disk_full.py``): fill the volume, append
while it is full, free 1 MB, append again; print what happened as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from reconcilers.events import NewEvent
from reconcilers.projections import PROJECTIONS
from service.store import SqliteStore


def fill(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def free_1mb(path: str) -> None:
    os.truncate(path, max(0, os.path.getsize(path) - (1 << 20)))


async def appends(store: SqliteStore, prefix: str, count: int) -> int:
    ok = 0
    for i in range(count):
        event = NewEvent("agora", f"{prefix}{i}", "agora.test", {"pad": "p" * 800}, room="c")
        try:
            await store.append(event)
            ok += 1
        except Exception:
            pass
    return ok


async def main(volume: str) -> None:
    store = await SqliteStore.open(f"{volume}/events.db", PROJECTIONS, append_timeout=30)
    filler = f"{volume}/filler"
    fill(filler)
    while_full = await appends(store, "full-", 100)
    free_1mb(filler)
    after = await appends(store, "after-", 300)
    await store.close()
    print(json.dumps({"while_full": while_full, "after_freeing_1mb": after}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
