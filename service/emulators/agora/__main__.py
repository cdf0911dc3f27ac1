"""``python -m service.emulators.agora``: run the emulator from the command line."""

from .cli import run

raise SystemExit(run())
