"""A progress bar for long work (replay, reconcile of many rooms, migrate-store), on stderr so
that stdout stays the command's data.

Shown only on a terminal: in a pipe, a cron job or a test it draws nothing. Use::

    with progress("copying events", total=n) as advance:
        for batch in batches:
            ...
            advance(len(batch))

``total=None`` shows a spinner and the elapsed time, for work whose size is not known.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Advance = Callable[[int], None]


@contextmanager
def progress(
    description: str,
    total: int | None = None,
    *,
    file: IO[str] | None = None,
    enabled: bool | None = None,
) -> Iterator[Advance]:
    """Yield ``advance(n)``, which moves the bar by ``n`` items. ``enabled`` forces the bar on
    or off (default: on when ``file``, stderr by default, is a terminal)."""
    out = file or sys.stderr
    show = out.isatty() if enabled is None else enabled
    if not show:

        def ignore(n: int = 1) -> None:
            pass

        yield ignore
        return
    columns = (
        [SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]
        if total is None
        else [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
    )
    bar = Progress(*columns, console=Console(file=out, force_terminal=True), transient=True)
    task = bar.add_task(description, total=total)

    def advance(n: int = 1) -> None:
        bar.advance(task, n)

    with bar:
        yield advance
