"""``recctl status [ROOM] [--output FORMAT]``: what each room wants and what it has, from the store.

It reads the same projections the service does, so it works whether or not the service runs.
Without a room it prints one line per room; with one, the room's whole view (as the API's GET).
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import click

from reconcilers.budget import QueryBudget
from reconcilers.engine import Reconciler
from reconcilers.events import Store
from reconcilers.providers.registry import DEFAULT_PROVIDER
from service.api.views import room_view
from service.commands.common import CommandContext, output_option, print_table, run_with_store
from service.commands.refresh import Look, refresh
from service.inventory import live_sessions

PAGE = 100  # rooms a table shows by default: a screenful or two, and cheap at any scale
HEADERS = ("ROOM", "DESIRED", "PROVIDER", "SESSION", "RECORDING", "REASON")


async def status_command(
    reconciler: Reconciler,
    room: str | None,
    as_json: bool,
    out: TextIO | None = None,
    budget: QueryBudget | None = None,
    output: str | None = None,
    refresh_first: bool = False,
    limit: int | None = PAGE,
    cursor: str = "",
) -> int:
    """Print the rooms' status; 1 when the named room does not exist. With ``budget``, the
    table ends with the query interval the live sessions get, and whether the provider's rate
    limit stretches it. ``output``: table, json (an array) or jsonl (``as_json``: jsonl); one
    room's whole view is indented JSON unless jsonl. With ``refresh_first``, the provider is
    asked about each live session first (read-only, nothing written): the views are made from
    its answers, which are shown beside the log's (``refreshed``, and a PROVIDER SAYS column).
    Without a room, one page of ``limit`` rooms after ``cursor`` (``None``: every room): a
    page reads its rooms only, so it costs the same at 50 rooms as at 50,000."""
    output = output or ("jsonl" if as_json else "table")
    out = out or sys.stdout
    more: str | None = None
    if room:
        keys = [room]
    else:
        keys, more = await room_page(reconciler.store, cursor, limit)
    views = []
    looked: dict[str, tuple[Look, ...]] = {}
    for key in keys:
        state = await reconciler.state(key)
        if state.room_row is None or state.room_row.data.get("deleted"):
            if room:
                print(f"error: no such room {room!r} (use tenant/room)", file=sys.stderr)
                return 1
            continue
        if refresh_first:
            refreshed = await refresh(reconciler, key, persist=False)
            state, looked[key] = refreshed.state, refreshed.looks
        views.append((key, room_view(state)))
    records = [{"key": key, **view.model_dump()} for key, view in views]
    if refresh_first:
        for record in records:
            record["refreshed"] = [
                {"sid": lk.sid, "log": lk.logged, "provider": lk.provider}
                for lk in looked.get(record["key"], ())
            ]
    if more is not None and output != "table":
        print(f"more rooms: recctl status --cursor {more} (or --all)", file=sys.stderr)
    if output == "jsonl":
        out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        return 0
    if output == "json" or room:
        found: Any = records[0] if room else records
        out.write(json.dumps(found, indent=2, ensure_ascii=False) + "\n")
        return 0
    if refresh_first:
        rows = [
            (*_row(key, view.model_dump()), _provider_cell(looked.get(key, ())))
            for key, view in views
        ]
        print_table((*HEADERS, "PROVIDER SAYS"), rows, out)
    else:
        print_table(HEADERS, [_row(key, view.model_dump()) for key, view in views], out)
    if more is not None:
        out.write(f"\n(more rooms: recctl status --cursor {more}; or --all)\n")
    if budget is not None:
        live = await live_sessions(reconciler.store)
        stretched = "stretched by the rate limit" if budget.stretched(live) else "as configured"
        out.write(
            f"\n{live} live session(s): each queried every {budget.interval(live):.0f}s "
            f"({stretched}; {budget.rate_per_s:g} provider calls/s)\n"
        )
    return 0


async def room_page(store: Store, cursor: str, limit: int | None) -> tuple[list[str], str | None]:
    """The keys of up to ``limit`` rooms (not deleted) after ``cursor`` in key order, and the
    cursor of the next page (``None`` after the last). Deleted rooms' rows are skipped, so a
    page reads its rooms' rows and few more."""
    keys: list[str] = []
    after, batch = cursor, 1000 if limit is None else limit + 1
    while rows := await store.rows("rooms", after_key=after, limit=batch):
        for row in rows:
            if "/" not in row.key or row.data.get("deleted"):
                continue
            if limit is not None and len(keys) == limit:
                return keys, keys[-1]
            keys.append(row.key)
        after = rows[-1].key
    return keys, None


def _provider_cell(looks: tuple[Look, ...]) -> str:
    return "; ".join(f"{lk.sid[:8]} {lk.provider} (log: {lk.logged})" for lk in looks) or "-"


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
        spec.get("provider", DEFAULT_PROVIDER),
        described,
        recording["status"],
        reason,
    )


@click.command()
@click.argument("room", required=False)
@click.option("--json", "as_json", is_flag=True, help="the same as --output jsonl")
@click.option(
    "--refresh",
    "refresh_first",
    is_flag=True,
    help="ask the provider about each live session first (read-only; nothing is written)",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=PAGE,
    show_default=True,
    help="rooms on a page (without ROOM)",
)
@click.option("--cursor", default="", help="start after this room key (the last page's hint)")
@click.option("--all", "every", is_flag=True, help="every room, not one page")
@output_option()
def status(
    room: str | None,
    as_json: bool,
    refresh_first: bool,
    limit: int,
    cursor: str,
    every: bool,
    output: str,
) -> int:
    """Show what each room wants and has (from the store: the service need not run).

    Without ROOM: a page of rooms in key order (--limit, --cursor, or --all). With ROOM
    (tenant/room): that room's whole view, as the API's GET returns it. With
    --refresh, what the provider says now is shown beside what the log says, and the view is
    made from both.
    """
    from reconcilers.ratelimit import safe_rate

    async def body(ctx: CommandContext) -> int:
        budget = QueryBudget(
            rate_per_s=safe_rate(ctx.settings.agora_rate_limit_qps),
            min_interval=ctx.settings.query_interval_seconds,
        )
        code = await status_command(
            ctx.reconciler(),
            room,
            as_json,
            None,
            budget,
            output="jsonl" if as_json else output,
            refresh_first=refresh_first,
            limit=None if every else limit,
            cursor=cursor,
        )
        if code == 0 and room is None and not as_json and output == "table":
            from service.config import is_postgres
            from service.replicas.status import print_replicas

            if is_postgres(ctx.settings.database_url):  # several replicas may share the work
                await print_replicas(
                    ctx.settings.database_url, ctx.settings.lease_seconds, sys.stdout
                )
        return code

    return run_with_store(body, providers=refresh_first)
