"""Cloudflare test helpers: one RSA key pair for the whole run (key generation is slow), a
manual-clock emulator config, and a client mounted on the emulator in process."""

from __future__ import annotations

from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization

from reconcilers.providers.cloudflare.client import CloudflareConfig
from service.emulators.cloudflare import (
    CloudflareEmulator,
    EmulatorConfig,
    FaultConfig,
    new_private_key,
    private_key_pem,
)

KEY = new_private_key()
PRIVATE_PEM = private_key_pem(KEY)
PUBLIC_PEM = (
    KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
OTHER_KEY = new_private_key()
ACCOUNT, APP, TOKEN = "emulator-account", "emulator-app", "emulator-token"
BASE = f"/client/v4/accounts/{ACCOUNT}/realtime/kit/{APP}"
CONFIG = CloudflareConfig(ACCOUNT, APP, TOKEN, base_url="http://cloudflare.test/client/v4")


def manual(**changes: Any) -> EmulatorConfig:
    """Manual clock, no rate limit, no side effects of faults, the shared key."""
    values: dict[str, Any] = {
        "speed": 0,
        "qps_limit": None,
        "private_key_pem": PRIVATE_PEM,
        "faults": FaultConfig(side_effect_rate=0.0),
    }
    values.update(changes)
    return EmulatorConfig(**values)


def transport(emu: CloudflareEmulator) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=emu.app)
