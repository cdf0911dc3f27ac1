"""``recctl``: the operator's command line.

Each subcommand is registered by an ``add_parser(subparsers)`` function that adds its parser
and sets ``handler`` (``(args) -> exit code``) as a default. The built-in ones live here; to add
one (``reconcile``, ``status``, ``demo``...), write a module exposing ``add_parser`` and list it
in :data:`COMMAND_MODULES`. A handler that takes unparsed arguments through (``emulate``) also
sets ``accepts_extra=True`` and reads them from ``args.extra``.

Exit codes: 0 ok, 1 the command failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from reconcilers.events import Event, Store
from service.config import ConfigError, Settings
from service.logging import configure_logging

Handler = Callable[[argparse.Namespace], int]

COMMAND_MODULES: tuple[str, ...] = (
    "service.commands.reconcile",
    "service.commands.status",
    "service.commands.demo",
)
"""Modules exposing ``add_parser(subparsers)``, added after the built-in subcommands."""

EMULATORS = {
    "agora": "service.emulators.agora.cli",
    "cloudflare": "service.emulators.cloudflare.cli",
}
"""Emulator CLIs, each exposing ``add_arguments(parser)`` and ``main(args) -> int``."""

FOLLOW_INTERVAL_SECONDS = 0.5
_PAGE = 1000
_TABLE = (("SEQ", 7), ("RECEIVED", 20), ("SOURCE", 10), ("TYPE", 36), ("ROOM", 24), ("SESSION", 0))


def load_settings(*, quiet: bool = False) -> Settings:
    """Settings from the environment, logging configured (secrets redacted) before anything runs.

    ``quiet`` keeps a one-shot command's stderr to warnings. Raises :class:`ConfigError`.
    """
    from service.store import check_url

    settings = Settings.from_env()
    try:
        check_url(settings.database_url)
    except ValueError as exc:
        raise ConfigError(f"invalid environment variable DATABASE_URL: {exc}") from None
    level = "WARNING" if quiet and settings.log_level != "DEBUG" else settings.log_level
    configure_logging(level, settings.secret_values(), settings.log_format)
    return settings


# -- serve ------------------------------------------------------------------------------------


def _add_serve(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run the service (HTTP API, webhooks, metrics)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.runtime import build_app, tune_gc

    settings = load_settings()
    app = build_app(settings)
    tune_gc()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,  # ours, set up by load_settings: JSON, redacted
        access_log=settings.access_log,
        lifespan="on",  # a store that cannot open stops the start-up
        server_header=False,
        timeout_keep_alive=15,  # Agora advises keep-alive of 10 s or more for NCS callers
    )
    return 0


# -- events -----------------------------------------------------------------------------------


def _add_events(subparsers: Any) -> None:
    parser = subparsers.add_parser("events", help="print the event log")
    parser.add_argument("--room", help="only events of this room (an Agora channel name)")
    parser.add_argument("--since", type=int, default=0, metavar="SEQ", help="after this seq")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=_events)


def _events(args: argparse.Namespace) -> int:
    settings = load_settings(quiet=True)

    async def run() -> None:
        from service.store import open_store

        store = await open_store(settings.database_url)
        try:
            await tail_events(store, sys.stdout, args.since, args.room, args.json, args.follow)
        finally:
            await store.close()

    with contextlib.suppress(KeyboardInterrupt):  # the way out of --follow
        asyncio.run(run())
    return 0


async def tail_events(
    store: Store,
    out: TextIO,
    since: int = 0,
    room: str | None = None,
    as_json: bool = False,
    follow: bool = False,
    stop: asyncio.Event | None = None,
    interval: float = FOLLOW_INTERVAL_SECONDS,
) -> int:
    """Print events after ``since``; with ``follow``, poll for more until ``stop`` is set."""
    if not as_json:
        _write_table_row(out, [name for name, _ in _TABLE])
    last = since
    while True:
        page = await store.read_log(last, room, _PAGE)
        for event in page:
            if as_json:
                out.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
            else:
                _write_table_row(out, _cells(event))
            last = event.seq
        out.flush()
        if len(page) == _PAGE:
            continue
        if not follow:
            return last
        try:
            await asyncio.wait_for((stop or asyncio.Event()).wait(), interval)
            return last
        except TimeoutError:
            pass


def _cells(event: Event) -> list[str]:
    received = event.received_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    values = [event.seq, received, event.source, event.type, event.room, event.session]
    return ["-" if v is None else str(v) for v in values]


def _write_table_row(out: TextIO, cells: Sequence[str]) -> None:
    parts = []
    for (_, width), cell in zip(_TABLE, cells, strict=True):
        parts.append(cell if not width else cell[: width - 1].ljust(width))
    out.write(" ".join(parts).rstrip() + "\n")


# -- replay -----------------------------------------------------------------------------------


def _add_replay(subparsers: Any) -> None:
    parser = subparsers.add_parser("replay", help="rebuild every projection from the event log")
    parser.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace) -> int:
    from service.app import default_projections
    from service.store import open_store

    settings = load_settings(quiet=True)
    projections = default_projections()

    async def run() -> tuple[int, float]:
        store = await open_store(settings.database_url, projections)
        try:
            started = time.perf_counter()
            folded = await store.replay()
            return folded, time.perf_counter() - started
        finally:
            await store.close()

    folded, seconds = asyncio.run(run())
    names = ", ".join(p.name for p in projections)
    print(
        f"replayed {folded} events into {len(projections)} projections ({names}) in {seconds:.3f}s"
    )
    return 0


# -- emulate ----------------------------------------------------------------------------------


def _add_emulate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "emulate",
        help="run a provider emulator (see `recctl emulate agora --help`)",
        add_help=False,  # --help goes to the emulator's own parser
    )
    parser.add_argument("provider", choices=sorted(EMULATORS))
    parser.set_defaults(handler=_emulate, accepts_extra=True)


def _emulate(args: argparse.Namespace) -> int:
    """Delegate to the emulator's CLI, imported only now so recctl works without it."""
    name = EMULATORS[args.provider]
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not name.startswith(exc.name):
            raise
        print(f"error: the {args.provider} emulator is not available ({name})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"recctl emulate {args.provider}")
    module.add_arguments(parser)
    return int(module.main(parser.parse_args(args.extra)))


# -- entry point ------------------------------------------------------------------------------

BUILTIN_COMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_serve,
    _add_events,
    _add_replay,
    _add_emulate,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recctl",
        description="Declarative, self-healing cloud recordings. Configured by the environment.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser in BUILTIN_COMMANDS:
        add_parser(subparsers)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
