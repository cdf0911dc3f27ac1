"""``recctl reconcile [--room R] [--dry-run]``: show the plan for every room, then apply it.

It runs one pass per key against the same store and provider as the service, so an operator can
see exactly what the controller would do, and make it so now.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

import click

from reconcilers.actions import Action, session_of
from reconcilers.engine import CHANNEL_PREFIX, Reconciler, RoomState
from reconcilers.plan import Plan
from service.commands.common import (
    CommandContext,
    UserError,
    output_option,
    print_records,
    print_table,
    run_with_store,
)
from service.commands.progress import progress
from service.commands.refresh import Look, refresh
from service.inventory import LIVE_STATES as LIVE_STATES  # re-exported: moved there
from service.inventory import all_keys
from service.inventory import live_sessions as live_sessions
from service.inventory import orphan_channels as orphan_channels
from service.inventory import room_index as room_index

HEADERS = ("ROOM", "DESIRED", "OBSERVED", "ACTION", "REASON")
#: With a refresh: what the log said of each session, and what the provider said now.
REFRESH_HEADERS = ("ROOM", "DESIRED", "LOG", "PROVIDER", "OBSERVED", "ACTION", "REASON")
#: Above this many keys, a progress bar (on a terminal).
PROGRESS_ABOVE = 50


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


def rows_for(
    key: str, state: RoomState, plan: Plan, looks: tuple[Look, ...] | None = None
) -> list[tuple[str, ...]]:
    """The plan table's rows for one key; with ``looks`` (a refresh), what the provider said
    of each session beside what the log said, before the plan made from both."""
    desired, observed = describe(state)
    room = key.split("/", 1)[1] if "/" in key and not key.startswith(CHANNEL_PREFIX) else key
    seen: tuple[str, ...] = ()
    if looks is not None:
        logged = "; ".join(f"{lk.sid[:8]} {lk.logged}" for lk in looks) or "-"
        said = "; ".join(f"{lk.sid[:8]} {lk.provider}" for lk in looks) or "-"
        seen = (logged, said)
    if not plan.actions:
        return [(room, desired, *seen, observed, "-", plan.summary)]
    return [(room, desired, *seen, observed, _verb(a), a.reason) for a in plan.actions]


def _verb(action: Action) -> str:
    """``stop <sid>``: the action's kind, and the session it acts on if any."""
    sid = session_of(action)
    return f"{action.kind} {sid}" if sid else action.kind


async def reconcile_command(
    reconciler: Reconciler,
    room: str | None,
    dry_run: bool,
    out: TextIO | None = None,
    err: TextIO | None = None,
    concurrency: int = 8,
    output: str = "table",
    offline: bool = True,
) -> int:
    """Print the plan table; apply it unless ``dry_run``. Returns the process exit code.

    Unless ``offline``, each key is refreshed first (:func:`service.commands.refresh.refresh`):
    the provider is asked about the sessions the log believes alive, and the table shows its
    answers (PROVIDER) beside the log's (LOG) before the plan made from both. A dry run keeps
    what it learns in memory; an apply logs it, as the service would."""
    out, err = out or sys.stdout, err or sys.stderr
    keys = await all_keys(reconciler.store, room)
    if room is not None and await reconciler.store.get_row("rooms", room) is None:
        err.write(f"error: no such room {room!r} (use tenant/room)\n")
        return 1
    table: list[tuple[str, ...]] = []
    failures = 0
    sem = asyncio.Semaphore(concurrency)
    verb = "planning" if dry_run else "reconciling"

    with progress(
        f"{verb} {len(keys)} keys", len(keys), enabled=None if len(keys) > PROGRESS_ABOVE else False
    ) as advance:

        async def one(key: str) -> None:
            nonlocal failures
            async with sem:
                if offline:
                    state = await reconciler.state(key)
                    plan = reconciler.plan(state)
                    table.extend(rows_for(key, state, plan))
                else:
                    refreshed = await refresh(reconciler, key, persist=not dry_run)
                    state = refreshed.state
                    plan = refreshed.reconciler.plan(state)
                    table.extend(rows_for(key, state, plan, refreshed.looks))
                if not dry_run and plan.actions:
                    result = await reconciler.reconcile(key)
                    failures += result.result.kind in ("retry", "terminal")
                advance(1)

        await asyncio.gather(*(one(k) for k in keys))
    table.sort()
    headers = HEADERS if offline else REFRESH_HEADERS
    if output == "table":
        print_table(headers, table, out)
    else:
        print_records(
            [dict(zip(map(str.lower, headers), r, strict=True)) for r in table], output, out
        )
    verb = "planned" if dry_run else "applied"
    acted = sum(1 for r in table if r[-2] != "-")
    err.write(f"{verb} {acted} action(s) over {len(keys)} key(s); {failures} failed\n")
    return 1 if failures else 0


@click.command()
@click.option("--room", metavar="ROOM", help="only this room (tenant/room)")
@click.option("--dry-run", is_flag=True, help="show the plan, change nothing")
@click.option(
    "--offline",
    is_flag=True,
    help="plan from the log alone: do not ask the provider about live sessions first",
)
@output_option()
def reconcile(room: str | None, dry_run: bool, offline: bool, output: str) -> int:
    """Show the plan for every room (or one) and apply it, as the controller would now.

    First it refreshes, like `terraform plan`: the provider is asked (read-only queries,
    within the rate limit) about each session the log believes alive, and the table shows
    what the provider said (PROVIDER) beside what the log said (LOG), then the plan made from
    both. --offline plans from the log alone.
    """

    async def body(ctx: CommandContext) -> int:
        if not dry_run:
            await _refuse_beside_live_replicas(ctx)
        return await reconcile_command(
            ctx.reconciler(), room, dry_run, output=output, offline=offline
        )

    return run_with_store(body, providers=True)


async def _refuse_beside_live_replicas(ctx: CommandContext) -> None:
    """On PostgreSQL, live replicas own the rooms under leases; a pass from here would act
    beside them without a fence. Only ``--dry-run`` then, or stop them first."""
    from service.config import is_postgres
    from service.replicas.status import live_replicas

    url = ctx.settings.database_url
    if is_postgres(url) and (live := await live_replicas(url, ctx.settings.lease_seconds)):
        raise UserError(
            f"{len(live)} replica(s) are running on this database and own the rooms "
            f"({', '.join(live)}): use --dry-run, or stop them first",
            exit_code=2,
        )
