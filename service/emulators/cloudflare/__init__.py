"""An emulator of Cloudflare RealtimeKit recordings: REST API, lifecycle, signed webhooks.

Behaves as ``docs/providers/cloudflare.md`` documents, from in-memory state and one
timer heap (shared with the Agora emulator), deterministically for a seed. Use it in process
(``CloudflareEmulator(config).app`` behind ``httpx.ASGITransport``) or as a server
(``recctl emulate cloudflare``, see :mod:`.cli`).
"""

from .config import EmulatorConfig
from .emulator import CloudflareEmulator, new_private_key, private_key_pem
from .faults import FaultConfig

__all__ = [
    "CloudflareEmulator",
    "EmulatorConfig",
    "FaultConfig",
    "new_private_key",
    "private_key_pem",
]
