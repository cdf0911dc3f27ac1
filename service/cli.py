"""``recctl``: the operator's command line (click, with rich tables and progress bars).

Every command is a click command in a module of :mod:`service.commands`, registered here, in
:data:`COMMANDS`, and imported only when it runs (so that ``recctl events`` does not load the
service, and completion is fast). The shared set-up (settings, store, providers, ``--output``)
lives in :mod:`service.commands.common`.

Exit codes: 0 ok, 1 the command failed, 2 bad usage or configuration, 130 interrupted, 141 the
reader of our output went away (``recctl events | head``), as a process killed by SIGPIPE.

Shell completion: ``eval "$(recctl completion bash)"`` (or zsh, fish), which is click's
``_RECCTL_COMPLETE=bash_source recctl``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from service.commands.common import UserError
from service.config import ConfigError
from service.store.errors import StoreError

COMMANDS: dict[str, str] = {
    "serve": "service.commands.serve:serve",
    "status": "service.commands.status:status",
    "events": "service.commands.events:events",
    "reconcile": "service.commands.reconcile:reconcile",
    "replay": "service.commands.replay:replay",
    "compact": "service.commands.compact:compact",
    "migrate": "service.commands.migrate:migrate",
    "migrate-store": "service.commands.migrate:migrate_store",
    "demo": "service.commands.demo:demo_command",
    "dev": "service.commands.dev:dev",
    "emulate": "service.commands.emulate:emulate",
    "completion": "service.commands.completion:completion",
}
"""Every ``recctl`` command: name -> ``module:attribute`` of its click command."""

EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process killed by SIGPIPE
EXIT_INTERRUPTED = 130


class Commands(click.Group):
    """The commands of :data:`COMMANDS`, imported when first asked for; a reader that closes
    our stdout early ends the command quietly."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _silence_stdout()
            raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing at exit does not fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (a test's capture): nothing to flush
        pass
    finally:
        os.close(devnull)


@click.command(
    cls=Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="recording-reconciler", prog_name="recctl")
def recctl() -> None:
    """Declarative, self-healing cloud recordings. Configured by the environment
    (DATABASE_URL, AGORA_*, CLOUDFLARE_*, API_TOKENS, STORAGE_PROFILES...).

    Try `recctl demo`, or `recctl dev` for a playground to call with curl. Shell completion:
    `eval "$(recctl completion bash)"` (zsh, fish; click's `_RECCTL_COMPLETE`).
    """


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``recctl`` with ``argv`` (default: the process's arguments); returns the exit code.
    Errors a user can fix are one line on stderr, never a traceback."""
    try:
        result = recctl.main(
            list(argv) if argv is not None else None,
            prog_name="recctl",
            complete_var="_RECCTL_COMPLETE",
            standalone_mode=False,
        )
    except click.UsageError as exc:
        exc.show()
        return 2
    except UserError as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return exc.code
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return exc.exit_code
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except StoreError as exc:  # the database cannot be reached, or refused the work
        click.echo(f"error: {exc}", err=True)
        return 1
    except (click.Abort, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
