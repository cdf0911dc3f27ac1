"""``recctl status [ROOM] [--json]``: what each room wants and what it has, from the store.

It reads the same projections the service does, so it works whether or not the service runs.
Without a room it prints one line per room; with one, the room's whole view (as the API's GET).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, TextIO

from reconcilers.budget import QueryBudget
from reconcilers.engine import Reconciler
from service.api.views import room_view
from service.commands.reconcile import all_keys, live_sessions, render

HEADERS = ("ROOM", "DESIRED", "PROVIDER", "SESSION", "RECORDING", "REASON")


async def status_command(
    reconciler: Reconciler,
    room: str | None,
    as_json: bool,
    out: TextIO | None = None,
    budget: QueryBudget | None = None,
) -> int:
    """Print the rooms' status; 1 when the named room does not exist. With ``budget``, the
    table ends with the query interval the live sessions get, and whether the provider's rate
    limit stretches it."""
    out = out or sys.stdout
    keys = [room] if room else [k for k in await all_keys(reconciler.store) if "/" in k]
    views = []
    for key in keys:
        state = await reconciler.state(key)
        if state.room_row is None or state.room_row.data.get("deleted"):
            if room:
                print(f"error: no such room {room!r} (use tenant/room)", file=sys.stderr)
                return 1
            continue
        views.append((key, room_view(state)))
    if as_json or room:
        for key, view in views:
            out.write(json.dumps({"key": key, **view.model_dump()}, indent=None if not room else 2))
            out.write("\n")
        return 0
    render([_row(key, view.model_dump()) for key, view in views], out, HEADERS)
    if budget is not None:
        live = await live_sessions(reconciler.store)
        stretched = "stretched by the rate limit" if budget.stretched(live) else "as configured"
        out.write(
            f"\n{live} live session(s): each queried every {budget.interval(live):.0f}s "
            f"({stretched}; {budget.rate_per_s:g} provider calls/s)\n"
        )
    return 0


def _row(key: str, view: dict[str, Any]) -> tuple[str, ...]:
    spec, observed = view["spec"], view["observed"]
    session = observed.get("session") or {}
    recording = next(c for c in view["conditions"] if c["type"] == "Recording")
    degraded = next(c for c in view["conditions"] if c["type"] == "Degraded")
    reason = degraded["message"] if degraded["status"] == "True" else recording["reason"]
    described = f"{session['state']} seg{observed['segment']}" if session else "-"
    return (
        key,
        f"{spec['state']} (g{view['generation']})",
        spec.get("provider", "agora"),
        described,
        recording["status"],
        reason,
    )


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="show what each room wants and has")
    parser.add_argument("room", nargs="?", help="one room (tenant/room): its whole view")
    parser.add_argument("--json", action="store_true", help="one JSON object per room")
    parser.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    from reconcilers.projections import PROJECTIONS
    from service.cli import load_settings
    from service.runtime import build_reconciler
    from service.store import open_store
    from service.wiring import safe_rate

    settings = load_settings(quiet=True)

    async def run() -> int:
        store = await open_store(settings.database_url, PROJECTIONS)
        try:
            budget = QueryBudget(
                rate_per_s=safe_rate(settings.agora_rate_limit_qps),
                min_interval=settings.query_interval_seconds,
            )
            reconciler = build_reconciler(settings, store, {})
            return await status_command(reconciler, args.room, args.json, None, budget)
        finally:
            await store.close()

    return asyncio.run(run())
