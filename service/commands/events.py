"""``recctl events``: print the event log, all of it or one room's, and follow it.

A room's story is in two places of the log: what the API and the reconciler did is stored under
the room (``tenant/name``), what the provider told us (webhooks) under the provider's channel
(the Agora channel name, the Cloudflare meeting id), since a webhook names only that. ``--room``
shows both, merged in log order; ``--channel`` shows what is stored under one channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Sequence
from typing import TextIO

import click

from reconcilers.events import Event, Store
from service.commands.common import (
    CommandContext,
    UserError,
    add_row,
    output_option,
    print_grid,
    run_with_store,
    table,
)
from service.inventory import room_index

FOLLOW_INTERVAL_SECONDS = 0.5
PAGE = 1000
HEADERS = ("SEQ", "RECEIVED", "SOURCE", "TYPE", "ROOM", "SESSION")
#: Fixed widths, so that pages printed one after another line up (0: as wide as it needs).
WIDTHS = (7, 20, 10, 36, 24, 0)


Filter = tuple[str, str | None]
"""Events stored under this room column, and (when set) from this source only."""


async def resolve_room(store: Store, room: str) -> list[Filter]:
    """The log's names for ``room`` (``tenant/name``, or a name one tenant has): the room key,
    and its provider channel (what the provider's webhooks are stored under). Raises
    :class:`UserError` for no such room, or an ambiguous one."""
    if "/" in room:
        key = room
    else:
        keys, _ = await room_index(store)
        matches = [k for k in keys if k.split("/", 1)[1] == room]
        if len(matches) > 1:
            raise UserError(f"room name {room!r} is ambiguous: {', '.join(matches)}")
        key = matches[0] if matches else room
    row = await store.get_row("rooms", key)
    if row is None:
        raise UserError(
            f"no such room {room!r} (use tenant/room, or --channel for a provider channel)"
        )
    filters: list[Filter] = [(key, None)]
    provider, _, channel = (row.room or "").partition("/")  # projections.channel_key's form
    if channel:
        filters.append((channel, provider))
    return filters


async def read_page(
    store: Store, after: int, filters: Sequence[Filter] | None, limit: int = PAGE
) -> tuple[list[Event], bool]:
    """The next events after ``after`` that match any of ``filters`` (all when ``None``), in
    log order, and whether more may follow at once."""
    if filters is None:
        page = await store.read_log(after, None, limit)
        return page, len(page) == limit
    pages = [await store.read_log(after, name, limit) for name, _ in filters]
    full = [p[-1].seq for p in pages if len(p) == limit]
    merged = sorted(
        (
            e
            for p, (_, source) in zip(pages, filters, strict=True)
            for e in p
            if source is None or e.source == source
        ),
        key=lambda e: e.seq,
    )
    if full:  # beyond the shortest full page, another name may have events not read yet
        merged = [e for e in merged if e.seq <= min(full)]
    return merged, bool(full)


async def tail_events(
    store: Store,
    out: TextIO,
    since: int = 0,
    filters: Sequence[Filter] | None = None,
    output: str = "table",
    follow: bool = False,
    stop: asyncio.Event | None = None,
    interval: float = FOLLOW_INTERVAL_SECONDS,
) -> int:
    """Print events after ``since``; with ``follow``, poll for more until ``stop`` is set.
    Returns the last seq printed."""
    last, first_page, printed = since, True, 0
    if output == "json":
        out.write("[")
    while True:
        page, more = await read_page(store, last, filters)
        if output == "table" and (page or first_page):
            grid = table(HEADERS, widths=WIDTHS)
            grid.show_header = first_page
            for event in page:
                add_row(grid, cells(event))
            print_grid(grid, out)
            first_page = False
        else:
            for event in page:
                text = json.dumps(event.to_json(), ensure_ascii=False)
                if output == "json":
                    out.write(("\n  " if not printed else ",\n  ") + text)
                else:
                    out.write(text + "\n")
                printed += 1
        last = page[-1].seq if page else last
        out.flush()
        if more:
            continue
        if not follow:
            if output == "json":
                out.write("\n]\n" if printed else "]\n")
            return last
        try:
            await asyncio.wait_for((stop or asyncio.Event()).wait(), interval)
            return last
        except TimeoutError:
            pass


def cells(event: Event) -> list[str | int | None]:
    received = event.received_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [event.seq, received, event.source, event.type, event.room, event.session]


@click.command()
@click.option(
    "--room",
    metavar="ROOM",
    help="one room's events: its own (API, reconciler) and its provider channel's (webhooks); "
    "tenant/name, or the name when only one tenant has it",
)
@click.option(
    "--channel",
    metavar="CHANNEL",
    help="only events stored under this provider channel (Agora channel, Cloudflare meeting id)",
)
@click.option("--since", type=int, default=0, metavar="SEQ", help="only events after this seq")
@click.option("--follow", "-f", is_flag=True, help="keep printing new events (Ctrl-C stops)")
@click.option("--json", "as_json", is_flag=True, help="the same as --output jsonl")
@output_option()
def events(
    room: str | None,
    channel: str | None,
    since: int,
    follow: bool,
    as_json: bool,
    output: str,
) -> int:
    """Print the event log, oldest first."""
    if room and channel:
        raise click.UsageError("--room and --channel exclude each other")
    output = "jsonl" if as_json else output
    if follow and output == "json":
        raise click.UsageError("--follow prints a stream: use --output jsonl")

    async def body(ctx: CommandContext) -> int:
        filters: list[Filter] | None = None
        if room:
            filters = await resolve_room(ctx.store, room)
        elif channel:
            filters = [(channel, None)]
        await tail_events(ctx.store, sys.stdout, since, filters, output, follow)
        return 0

    with contextlib.suppress(KeyboardInterrupt):  # the way out of --follow
        return run_with_store(body, ())
    return 0
