"""Command line: run the emulator as a real HTTP server (``recctl emulate cloudflare``).

Every :class:`EmulatorConfig` setting and the shared fault settings are flags. With none, it
serves account ``emulator-account``, app ``emulator-app``, token ``emulator-token`` on
127.0.0.1:8082 at real-time speed, signing webhooks with a fresh key; ``--public-key-out FILE``
writes that key's PEM for the service's ``CLOUDFLARE_WEBHOOK_PUBLIC_KEY``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.emulators.framework.cli import (
    Flags,
    add_config_arguments,
    add_fault_arguments,
    add_server_arguments,
    config_values,
    fault_config,
    serve,
)

from .config import EmulatorConfig
from .emulator import CloudflareEmulator
from .faults import ENDPOINTS, FaultConfig

# (flag dest == EmulatorConfig field, type, help)
_CONFIG_FLAGS: Flags = (
    ("account_id", str, "account id served (default emulator-account)"),
    ("app_id", str, "RealtimeKit app id served (default emulator-app)"),
    ("api_token", str, "Bearer API token accepted (default emulator-token)"),
    ("webhook_url", str, "URL receiving the signed webhooks"),
    ("webhook_id", str, "rtk-webhook-id header value"),
    ("seed", int, "seed of every id and fault stream (default 0)"),
    ("speed", float, "emulated seconds per real second; 0 = manual clock (default 1)"),
    ("epoch", float, "emulated start time, epoch seconds (default now)"),
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every emulator flag to ``parser`` (the host command owns the parser)."""
    add_server_arguments(parser, port=8082)
    add_config_arguments(parser, _CONFIG_FLAGS)
    parser.add_argument(
        "--private-key-file", default=None, help="PEM RSA private key signing the webhooks"
    )
    parser.add_argument(
        "--public-key-out", default=None, help="write the webhook public key (PEM) here"
    )
    parser.add_argument(
        "--invoked-webhook",
        action="store_true",
        default=None,
        help="also send recording.statusUpdate for INVOKED (Dyte did; RealtimeKit may not)",
    )
    parser.add_argument(
        "--stable-delivery-id",
        action="store_true",
        default=None,
        help="keep rtk-uuid across retries (Dyte's reading; default: new per delivery)",
    )
    parser.add_argument(
        "--callback-retry-delays",
        default=None,
        metavar="S,S,S",
        help="emulated seconds before each webhook retry (default 1,5,30)",
    )
    add_fault_arguments(parser, ENDPOINTS, _FAULT_FLAGS)


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The :class:`EmulatorConfig` the flags describe (unset flags keep the defaults)."""
    values = config_values(args, _CONFIG_FLAGS, ("invoked_webhook", "stable_delivery_id"))
    if args.private_key_file:
        values["private_key_pem"] = Path(args.private_key_file).read_text(encoding="utf-8")
    values["faults"] = fault_config(args, FaultConfig, _FAULT_FLAGS)
    return EmulatorConfig(**values)


def main(args: argparse.Namespace) -> int:
    """Serve the emulator until interrupted; returns the process exit status."""
    try:
        emulator = CloudflareEmulator(config_from_args(args))
        if args.public_key_out:
            Path(args.public_key_out).write_text(emulator.public_key_pem, encoding="utf-8")
    except (ValueError, OSError) as exc:
        print(f"cloudflare emulator: {exc}", file=sys.stderr)
        return 2
    return serve(emulator.app, args)


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloudflare-emulator", description=__doc__)
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(run())
