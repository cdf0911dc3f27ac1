"""Command line: run the emulator as a real HTTP server (``recctl emulate cloudflare``).

Every :class:`EmulatorConfig` setting and the shared fault settings are flags. With none, it
serves account ``emulator-account``, app ``emulator-app``, token ``emulator-token`` on
127.0.0.1:8082 at real-time speed, signing webhooks with a fresh key; ``--public-key-out FILE``
writes that key's PEM for the service's ``CLOUDFLARE_WEBHOOK_PUBLIC_KEY``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from service.emulators.framework.cli import CLOCK_FLAGS, EmulatorCommand, Flags, Switch

from .config import EmulatorConfig
from .emulator import CloudflareEmulator
from .faults import FaultConfig

# (flag dest == EmulatorConfig field, type, help)
_CONFIG_FLAGS: Flags = (
    ("account_id", str, "account id served (default emulator-account)"),
    ("app_id", str, "RealtimeKit app id served (default emulator-app)"),
    ("api_token", str, "Bearer API token accepted (default emulator-token)"),
    ("webhook_url", str, "URL receiving the signed webhooks"),
    ("webhook_id", str, "rtk-webhook-id header value"),
    *CLOCK_FLAGS,
    ("qps_limit", float, "requests per second before 429; 0 disables (default 20)"),
    ("invoke_seconds", float, "INVOKED -> RECORDING delay (default 2)"),
    ("upload_seconds", float, "UPLOADING -> UPLOADED delay (default 5)"),
    ("empty_timeout", float, "auto-stop after this long with nobody in the meeting (default 60)"),
    ("min_recording_seconds", float, "shorter recordings end ERRORED (default 5)"),
    ("default_max_seconds", int, "max_seconds when a start names none (default 86400)"),
    ("callback_timeout", float, "real seconds to wait for a webhook's 2xx (default 10)"),
    ("callback_concurrency", int, "parallel webhook senders (default 8)"),
)

_FAULT_FLAGS: Flags = (
    ("side_effect_rate", float, "chance a 502/504/timeout start or stop was carried out"),
    ("hang_seconds", float, "how long a timeout fault hangs, real seconds (default 30)"),
    ("kill_rate_per_hour", float, "random recorder deaths (ERRORED) per recording-hour"),
    ("callback_drop_rate", float, "chance a webhook is never sent"),
    ("callback_duplicate_rate", float, "chance a webhook is sent twice"),
    ("callback_delay_rate", float, "chance a webhook is delayed by --callback-delay"),
    ("callback_reorder_rate", float, "chance a webhook is overtaken by the next one"),
)


class _Command(EmulatorCommand[EmulatorConfig, CloudflareEmulator]):
    """The shared command line, plus the webhook signing key in and out."""

    def add_provider_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--private-key-file", default=None, help="PEM RSA private key signing the webhooks"
        )
        parser.add_argument(
            "--public-key-out", default=None, help="write the webhook public key (PEM) here"
        )

    def provider_values(self, args: argparse.Namespace) -> dict[str, Any]:
        if not args.private_key_file:
            return {}
        return {"private_key_pem": Path(args.private_key_file).read_text(encoding="utf-8")}

    def prepare(self, emulator: CloudflareEmulator, args: argparse.Namespace) -> None:
        if args.public_key_out:
            Path(args.public_key_out).write_text(emulator.public_key_pem, encoding="utf-8")


COMMAND = _Command(
    name="cloudflare",
    description=__doc__,
    port=8082,
    settings=EmulatorConfig,
    faults=FaultConfig,
    build=CloudflareEmulator,
    config_flags=_CONFIG_FLAGS,
    fault_flags=_FAULT_FLAGS,
    switches=(
        Switch(
            "--invoked-webhook",
            "invoked_webhook",
            True,
            "also send recording.statusUpdate for INVOKED (Dyte did; RealtimeKit may not)",
        ),
        Switch(
            "--stable-delivery-id",
            "stable_delivery_id",
            True,
            "keep rtk-uuid across retries (Dyte's reading; default: new per delivery)",
        ),
    ),
    retry_help="emulated seconds before each webhook retry (default 1,5,30)",
)


#: The module's interface (``recctl emulate`` and ``__main__`` call it), as the command's methods.
add_arguments = COMMAND.add_arguments
config_from_args = COMMAND.config_from_args
main = COMMAND.main
run = COMMAND.run


if __name__ == "__main__":
    raise SystemExit(run())
