"""``recctl completion SHELL``: the shell completion script, from click's completion support."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> int:
    """Print the completion script for SHELL. Install it with, for bash:

    \b
      recctl completion bash > ~/.local/share/bash-completion/completions/recctl
    or load it in the current shell:
      eval "$(recctl completion bash)"
    (the same as `eval "$(_RECCTL_COMPLETE=bash_source recctl)"`; zsh_source, fish_source).
    """
    cls = get_completion_class(shell)
    assert cls is not None, shell  # click ships all three
    root = ctx.find_root().command
    click.echo(cls(root, {}, "recctl", "_RECCTL_COMPLETE").source())
    return 0
