"""``recctl emulate PROVIDER [OPTIONS]``: run a provider's emulator as a real HTTP server.

Each emulator owns its options (an argparse parser in ``service/emulators/*/cli.py``, which also
serves ``python -m service.emulators.agora``); its click subcommand hands them through, so that
``recctl emulate agora --help`` is the emulator's own help.
"""

from __future__ import annotations

import argparse
import importlib

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


def run_emulator(provider: str, argv: list[str]) -> int:
    """Parse ``argv`` with the emulator's parser and run it; imported only now, so that recctl
    works without it."""
    name = EMULATORS[provider][0]
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not name.startswith(exc.name):
            raise
        raise UserError(f"the {provider} emulator is not available ({name})", 2) from None
    parser = argparse.ArgumentParser(prog=f"recctl emulate {provider}", description=module.__doc__)
    module.add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exited:  # --help (0) or a bad option (2, argparse said why)
        return int(exited.code or 0)
    return int(module.main(args))


def _emulator_command(provider: str, summary: str) -> click.Command:
    @click.command(
        provider,
        help=f"{summary}. Its options: `recctl emulate {provider} --help`.",
        short_help=summary,
        context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
        add_help_option=False,  # --help is the emulator's
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> int:
        return run_emulator(provider, list(args))

    return command


@click.group()
def emulate() -> None:
    """Run a provider emulator on loopback (fault injection, no credentials needed)."""


for _provider, (_, _summary) in EMULATORS.items():
    emulate.add_command(_emulator_command(_provider, _summary))
