"""``recctl replay``: rebuild every projection from the event log, in one transaction."""

from __future__ import annotations

import time

import click

from service.commands.common import CommandContext, output_option, print_records, run_with_store
from service.commands.progress import progress


@click.command()
@output_option()
def replay(output: str) -> int:
    """Rebuild every projection from the event log (the log is the truth; rows are derived)."""
    from service.runtime import default_projections

    projections = default_projections()
    names = [p.name for p in projections]

    async def body(ctx: CommandContext) -> int:
        started = time.perf_counter()
        # One transaction in the writer, which reports no progress: a spinner and the time.
        with progress("replaying the event log"):
            folded = await ctx.store.replay()
        seconds = time.perf_counter() - started
        if output == "table":
            click.echo(
                f"replayed {folded} events into {len(names)} projections ({', '.join(names)}) "
                f"in {seconds:.3f}s"
            )
        else:
            record = {"events": folded, "projections": names, "seconds": round(seconds, 3)}
            print_records([record], output)
        return 0

    return run_with_store(body, projections)
