"""``recctl reconcile [--room R] [--dry-run]``: show the plan for every room, then apply it.

It runs one pass per key against the same store and provider as the service, so an operator can
see exactly what the controller would do, and make it so now.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from reconcilers.engine import CHANNEL_PREFIX, Reconciler, RoomState
from reconcilers.events import Store
from reconcilers.plan import Plan

HEADERS = ("ROOM", "DESIRED", "OBSERVED", "ACTION", "REASON")


async def room_index(store: Store) -> tuple[list[str], dict[str, list[str]]]:
    """Every room key (deleted rooms too: they stop what they had), and the rooms that want
    something of each channel (not deleted): the ones a provider's event is for."""
    keys: list[str] = []
    by_channel: dict[str, list[str]] = {}
    after = ""
    while rows := await store.rows("rooms", after_key=after, limit=1000):
        after = rows[-1].key
        for r in rows:
            keys.append(r.key)
            if r.room and not r.data.get("deleted"):
                by_channel.setdefault(r.room, []).append(r.key)
    return keys, by_channel


async def all_keys(store: Store, room: str | None = None) -> list[str]:
    """Room keys to reconcile (one room, or all), plus channels with live sessions nobody owns."""
    if room is not None:
        return [room]
    keys, by_channel = await room_index(store)
    return keys + [CHANNEL_PREFIX + c for c in await orphan_channels(store, set(by_channel))]


async def orphan_channels(store: Store, mapped: set[str]) -> list[str]:
    """Channel keys of live sessions whose channel no room maps to."""
    found: set[str] = set()
    after = ""
    while rows := await store.rows("sessions", after_key=after, limit=1000):
        after = rows[-1].key
        for r in rows:
            if r.data.get("state") != "ended" and r.room and r.room not in mapped:
                found.add(r.room)
    return sorted(found)


LIVE_STATES = frozenset({"starting", "recording", "stopping"})


async def live_sessions(store: Store) -> int:
    """Sessions the provider runs for us now: what the query budget must cover."""
    live, after = 0, ""
    while rows := await store.rows("sessions", after_key=after, limit=2000):
        after = rows[-1].key
        live += sum(1 for r in rows if r.data.get("state") in LIVE_STATES)
    return live


def describe(state: RoomState) -> tuple[str, str]:
    """Short 'desired' and 'observed' cells for the plan table."""
    d = state.desired
    desired = "-" if d is None else f"{d.spec.state} (g{d.generation})"
    cur = state.observed.current
    session = state.observed.session(cur.sid) if cur else None
    if session is not None:
        observed = f"{session.state} seg{cur.segment if cur else '?'}"
    elif cur is not None:
        observed = f"starting seg{cur.segment}"
    else:
        live = [s for s in state.observed.sessions if s.alive]
        observed = f"{len(live)} live session(s)" if live else "nothing"
    return desired, observed


def rows_for(key: str, state: RoomState, plan: Plan) -> list[tuple[str, ...]]:
    desired, observed = describe(state)
    room = key.split("/", 1)[1] if "/" in key and not key.startswith(CHANNEL_PREFIX) else key
    if not plan.actions:
        return [(room, desired, observed, "-", plan.summary)]
    return [
        (room, desired, observed, f"{a.kind}{' ' + a.sid if a.sid else ''}", a.reason)
        for a in plan.actions
    ]


def render(
    rows: Sequence[tuple[str, ...]], out: TextIO, headers: tuple[str, ...] = HEADERS
) -> None:
    """A plain table, columns sized to their content (at most 48 characters)."""
    table = [headers, *rows]
    widths = [min(max(len(r[i]) for r in table), 48) for i in range(len(headers))]
    for r in table:
        out.write("  ".join(c[:48].ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        out.write("\n")


async def reconcile_command(
    reconciler: Reconciler,
    room: str | None,
    dry_run: bool,
    out: TextIO | None = None,
    err: TextIO | None = None,
    concurrency: int = 8,
) -> int:
    """Print the plan table; apply it unless ``dry_run``. Returns the process exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    keys = await all_keys(reconciler.store, room)
    if room is not None and await reconciler.store.get_row("rooms", room) is None:
        err.write(f"error: no such room {room!r} (use tenant/room)\n")
        return 1
    table: list[tuple[str, ...]] = []
    failures = 0
    done = 0
    last_progress = time.monotonic()
    sem = asyncio.Semaphore(concurrency)

    async def one(key: str) -> None:
        nonlocal failures, done, last_progress
        async with sem:
            state = await reconciler.state(key)
            plan = reconciler.plan(state)
            table.extend(rows_for(key, state, plan))
            if not dry_run and plan.actions:
                result = await reconciler.reconcile(key)
                failures += result.result.kind in ("retry", "terminal")
            done += 1
            if len(keys) > 50 and time.monotonic() - last_progress > 1.0:
                last_progress = time.monotonic()
                err.write(f"reconcile: {done}/{len(keys)} keys\n")

    await asyncio.gather(*(one(k) for k in keys))
    table.sort()
    render(table, out)
    verb = "planned" if dry_run else "applied"
    acted = sum(1 for r in table if r[3] != "-")
    err.write(f"{verb} {acted} action(s) over {len(keys)} key(s); {failures} failed\n")
    return 1 if failures else 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reconcile", help="show the plan for every room (or one) and apply it"
    )
    parser.add_argument("--room", help="only this room (tenant/room)")
    parser.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    parser.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    from service.cli import load_settings
    from service.runtime import build_providers, build_reconciler
    from service.store import open_store
    from service.wiring import provider_limiter

    settings = load_settings(quiet=True)

    async def run() -> int:
        from reconcilers.projections import PROJECTIONS

        store = await open_store(settings.database_url, PROJECTIONS)
        providers = build_providers(settings, provider_limiter(settings.agora_rate_limit_qps))
        try:
            reconciler = build_reconciler(settings, store, providers)
            return await reconcile_command(reconciler, args.room, args.dry_run)
        finally:
            for provider in providers.values():
                await provider.aclose()
            await store.close()

    return asyncio.run(run())
