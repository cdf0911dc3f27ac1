"""``recctl emulate PROVIDER [OPTIONS]``: run a provider's emulator as a real HTTP server.

Each emulator declares its options once, on an argparse parser (``add_arguments`` in
``service/emulators/*/cli.py``, which also serves ``python -m service.emulators.agora``); here
they become the options of a click subcommand (help, completion, errors as every other
command's), and the values go back to the emulator's ``main`` as the namespace it expects.
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType
from typing import Any

import click

from service.commands.common import UserError

EMULATORS: dict[str, tuple[str, str]] = {
    "agora": ("service.emulators.agora.cli", "Agora Cloud Recording (REST API, NCS callbacks)"),
    "cloudflare": (
        "service.emulators.cloudflare.cli",
        "Cloudflare RealtimeKit recordings (REST API, signed webhooks)",
    ),
}
"""Emulator CLIs, each exposing ``add_arguments(parser)`` and ``main(args) -> int``."""

_TYPES: dict[Any, click.ParamType[Any]] = {
    None: click.STRING,
    str: click.STRING,
    int: click.INT,
    float: click.FLOAT,
}


def click_options(parser: argparse.ArgumentParser) -> list[click.Parameter]:
    """The parser's options as click options, with the same names, defaults and help."""
    options: list[click.Parameter] = []
    for action in parser._actions:  # argparse keeps no public list of its actions
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        decls = [*action.option_strings, action.dest]
        text = action.help if action.help != argparse.SUPPRESS else None
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            options.append(
                click.Option(
                    decls, is_flag=True, flag_value=action.const, default=action.default, help=text
                )
            )
        elif isinstance(action, argparse._AppendAction):
            options.append(
                click.Option(
                    decls,
                    multiple=True,
                    type=_TYPES.get(action.type, click.STRING),
                    metavar=action.metavar,
                    help=text,
                )
            )
        elif isinstance(action, argparse._StoreAction) and action.nargs is None:
            if action.type not in _TYPES:
                raise TypeError(f"{action.dest}: no click type for {action.type!r}")
            options.append(
                click.Option(
                    decls,
                    type=_TYPES[action.type],
                    default=action.default,
                    metavar=action.metavar,
                    help=text,
                )
            )
        else:
            raise TypeError(f"{action.dest}: {type(action).__name__} has no click form")
    return options


def _load(provider: str) -> ModuleType:
    name = EMULATORS[provider][0]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not name.startswith(exc.name):
            raise
        raise UserError(f"the {provider} emulator is not available ({name})", 2) from None


def emulator_command(provider: str) -> click.Command:
    """The click command of ``provider``'s emulator; one that cannot be imported says so
    when run."""
    summary = EMULATORS[provider][1]
    try:
        module = _load(provider)
    except UserError as exc:
        missing = exc

        def unavailable(**_: Any) -> int:
            raise missing

        return click.Command(provider, callback=unavailable, help=summary, short_help=summary)
    parser = argparse.ArgumentParser(prog=f"recctl emulate {provider}")
    module.add_arguments(parser)

    def run(**values: Any) -> int:
        for key, value in values.items():  # append options: argparse's lists
            if isinstance(value, tuple):
                values[key] = list(value)
        return int(_load(provider).main(argparse.Namespace(**values)))

    return click.Command(
        provider,
        callback=run,
        params=click_options(parser),
        help=f"{summary}. Serves until Ctrl-C.",
        short_help=summary,
    )


class Emulators(click.Group):
    """The emulators of :data:`EMULATORS`, imported when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(EMULATORS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return emulator_command(cmd_name) if cmd_name in EMULATORS else None


@click.command(cls=Emulators)
def emulate() -> None:
    """Run a provider emulator on loopback (fault injection, no credentials needed)."""
