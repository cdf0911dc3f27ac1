"""``python -m service.emulators.cloudflare``: the emulator as a server."""

from .cli import run

raise SystemExit(run())
