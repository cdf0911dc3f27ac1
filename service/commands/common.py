"""What every ``recctl`` command shares: settings, the store opened and closed around the work,
``--output table|json|jsonl``, rich tables, and the one-line error a user gets.

A command's body is an ``async (CommandContext) -> int``; :func:`run_with_store` loads the
settings, opens the store (and the providers when asked), runs the body and tears it all down,
so that no command repeats that set-up.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from service.config import ConfigError, Settings

if TYPE_CHECKING:
    from reconcilers.engine import Reconciler
    from reconcilers.events import Projection, Store
    from reconcilers.providers.base import Provider

OUTPUTS = ("table", "json", "jsonl")
#: Width of a table written to a pipe or a file: wide enough that nothing wraps.
PIPE_WIDTH = 1000

F = TypeVar("F", bound=Callable[..., Any])


class UserError(click.ClickException):
    """A mistake the user can fix (a room that does not exist, a missing event log): one line
    on stderr, no traceback, a non-zero exit (1 unless told)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.code = exit_code


def load_settings(*, quiet: bool = False) -> Settings:
    """Settings from the environment, logging configured (secrets redacted) before anything runs.

    ``quiet`` keeps a one-shot command's stderr to warnings. Raises :class:`ConfigError`.
    """
    from service.logging import configure_logging
    from service.store import check_url

    settings = Settings.from_env()
    try:
        check_url(settings.database_url)
    except ValueError as exc:
        raise ConfigError(f"invalid environment variable DATABASE_URL: {exc}") from None
    level = "WARNING" if quiet and settings.log_level != "DEBUG" else settings.log_level
    configure_logging(level, settings.secret_values(), settings.log_format)
    return settings


@dataclass
class CommandContext:
    """The opened store, and the providers when the command talks to them."""

    settings: Settings
    store: Store
    providers: dict[str, Provider] = field(default_factory=dict)

    def reconciler(self) -> Reconciler:
        from service.runtime import build_reconciler

        return build_reconciler(self.settings, self.store, self.providers)


def require_existing_log(url: str) -> None:
    """A read-only command given a SQLite file that is not there says so, instead of creating
    an empty log and showing nothing."""
    from service.store.sqlite.schema import sqlite_path

    if url.partition(":")[0].lower() != "sqlite":
        return
    path = Path(sqlite_path(url))
    if not path.exists():
        raise UserError(
            f"no event log at {path} (DATABASE_URL={url}); run the service or `recctl demo` first"
        )


def shown_url(url: str) -> str:
    """``url`` fit for a message: any password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@asynccontextmanager
async def opened(
    settings: Settings,
    projections: Sequence[Projection] | None = None,
    *,
    providers: bool = False,
    must_exist: bool = True,
) -> AsyncIterator[CommandContext]:
    """The store (with ``projections``, default all of them) and, with ``providers``, the
    provider adapters behind their rate limits; closed in reverse when the block ends."""
    from reconcilers.projections import PROJECTIONS
    from service.store import open_store

    if must_exist:
        require_existing_log(settings.database_url)
    try:
        store = await open_store(
            settings.database_url, PROJECTIONS if projections is None else projections
        )
    except (sqlite3.Error, OSError) as exc:  # not a database, a directory, no permission
        shown = shown_url(settings.database_url)
        raise UserError(f"cannot open the event log {shown}: {exc}") from None
    built: dict[str, Provider] = {}
    try:
        if providers:
            from reconcilers.ratelimit import provider_limiter
            from service.runtime import build_providers

            built = build_providers(settings, provider_limiter(settings.agora_rate_limit_qps))
        yield CommandContext(settings, store, built)
    finally:
        for provider in built.values():
            await provider.aclose()
        await store.close()


def run_with_store(
    body: Callable[[CommandContext], Awaitable[int]],
    projections: Sequence[Projection] | None = None,
    *,
    providers: bool = False,
    must_exist: bool = True,
) -> int:
    """Load the settings (quietly), open the store around ``body`` and return its exit code."""
    settings = load_settings(quiet=True)

    async def run() -> int:
        async with opened(settings, projections, providers=providers, must_exist=must_exist) as ctx:
            return await body(ctx)

    return asyncio.run(run())


def output_option(default: str = "table") -> Callable[[F], F]:
    """``--output/-o table|json|jsonl``: a table for people, JSON (one array) or JSON lines
    (one object a line) for programs."""
    return click.option(
        "--output",
        "-o",
        type=click.Choice(OUTPUTS),
        default=default,
        show_default=True,
        help="table for people; json (one array) or jsonl (one object a line) for programs",
    )


class _Console(Console):
    """A rich console that leaves a closed pipe to ``recctl``'s main (rich exits 1 itself)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def console(file: IO[str] | None = None) -> Console:
    """A rich console on ``file`` (stdout): the terminal's width, or wide on a pipe so that
    ``grep`` sees whole lines; colour only on a terminal."""
    out = file or sys.stdout
    tty = out.isatty()
    return _Console(
        file=out,
        width=None if tty else PIPE_WIDTH,
        highlight=False,
        soft_wrap=not tty,
        force_terminal=None if tty else False,
    )


def table(headers: Sequence[str], *, widths: Sequence[int] | None = None) -> Table:
    """A borderless table: headers in bold, columns sized to their content (or ``widths``)."""
    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for i, header in enumerate(headers):
        width = widths[i] if widths else None
        grid.add_column(header, no_wrap=True, overflow="ellipsis", width=width or None)
    return grid


def add_row(grid: Table, cells: Iterable[object]) -> None:
    """Cells as plain text: a reason that contains ``[...]`` is not rich markup."""
    grid.add_row(*(Text("-" if c is None else str(c)) for c in cells))


def print_grid(grid: Table, file: IO[str] | None = None) -> None:
    """Print ``grid``; on a pipe without the spaces rich pads the last column with."""
    screen = console(file)
    if screen.is_terminal:
        screen.print(grid)
        return
    with screen.capture() as captured:
        screen.print(grid)
    out = file or sys.stdout
    out.writelines(line.rstrip() + "\n" for line in captured.get().splitlines())
    out.flush()


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], file: IO[str] | None = None
) -> None:
    grid = table(headers)
    for row in rows:
        add_row(grid, row)
    print_grid(grid, file)


def print_records(
    records: Sequence[Mapping[str, Any]], output: str, file: IO[str] | None = None
) -> None:
    """``json``: one indented array; ``jsonl``: one object a line."""
    out = file or sys.stdout
    if output == "json":
        out.write(json.dumps(list(records), indent=2, ensure_ascii=False) + "\n")
    else:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()
