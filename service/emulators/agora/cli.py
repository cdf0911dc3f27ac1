"""Command line: run the emulator as a real HTTP server (``recctl emulate agora``).

Every :class:`EmulatorConfig` and :class:`FaultConfig` setting is a flag; with no flags the
emulator serves App ID ``emulator-app`` with key/secret ``emulator-key``/``emulator-secret``
on 127.0.0.1:8081 at real-time speed.
"""

from __future__ import annotations

import argparse
import sys

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
from .emulator import AgoraEmulator
from .faults import ENDPOINTS, FaultConfig

# (flag dest == EmulatorConfig field, type, help)
_CONFIG_FLAGS: Flags = (
    ("app_id", str, "App ID served (default emulator-app)"),
    ("customer_key", str, "Basic auth customer ID (default emulator-key)"),
    ("customer_secret", str, "Basic auth customer secret (default emulator-secret)"),
    ("app_certificate", str, "enable token checks: start needs a token (else error 110)"),
    ("ncs_secret", str, "NCS secret signing the callbacks"),
    ("callback_url", str, "URL receiving cloud recording notifications (productId 3)"),
    ("rtc_callback_url", str, "URL for RTC channel events (productId 1); default callback-url"),
    ("rtc_ncs_secret", str, "NCS secret for RTC events; default ncs-secret"),
    ("seed", int, "seed of every id and fault stream (default 0)"),
    ("speed", float, "emulated seconds per real second; 0 = manual clock (default 1)"),
    ("epoch", float, "emulated start time, epoch seconds (default now)"),
    ("qps_limit", float, "requests per second per App ID before 429; 0 disables (default 10)"),
    ("max_concurrent_tasks", int, "live tasks before 406 vendor_over_load (default 50)"),
    ("resource_ttl", float, "resource id lifetime before 433, seconds (default 300)"),
    ("slice_seconds", float, "emulated seconds per HLS slice (default 10)"),
    ("startup_seconds", float, "time from start to status 4 (default 2)"),
    ("exit_seconds", float, "time from stop/idle to session exit (default 2)"),
    ("failover_seconds", float, "failover window after a kill (default 30)"),
    ("max_failovers", int, "failovers per task before it dies (default 3)"),
    ("progress_interval", float, "seconds between uploading_progress events; 0 = none"),
    ("mp4_rollover_seconds", float, "MP4 file length in mix mode (default 7200)"),
    ("not_found_form", str, "404 body: short, long or alternate (default short)"),
    ("default_profile", str, "profile of users joined without a role (default communication)"),
    ("callback_timeout", float, "real seconds to wait for a callback's 200 (default 10)"),
    ("callback_concurrency", int, "parallel callback senders (default 8)"),
    ("callback_log_size", int, "deliveries kept for GET /_emulator/callbacks"),
)

_FAULT_FLAGS: Flags = (
    ("side_effect_rate", float, "chance a 65/62/timeout start or stop was carried out"),
    ("hang_seconds", float, "how long a timeout fault hangs, real seconds (default 30)"),
    ("kill_rate_per_hour", float, "random kills per task-hour (emulated)"),
    ("kill_failover_ratio", float, "share of random kills that fail over (default 1)"),
    ("token_expired_rate", float, "chance a start's recorder fails to join with 109"),
    ("token_invalid_rate", float, "chance a start's recorder fails to join with 110"),
    ("backup_rate", float, "chance a task's uploads end 'backuped' (event 32)"),
    ("callback_drop_rate", float, "chance a notification is never sent"),
    ("callback_duplicate_rate", float, "chance a notification is sent twice"),
    ("callback_delay_rate", float, "chance a notification is delayed by --callback-delay"),
    ("callback_reorder_rate", float, "chance a notification is overtaken by the next one"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every emulator flag to ``parser`` (the host command owns the parser)."""
    add_server_arguments(parser, port=8081)
    add_config_arguments(parser, _CONFIG_FLAGS)
    parser.add_argument(
        "--no-rtc-events",
        dest="rtc_events",
        action="store_false",
        default=None,
        help="do not send RTC channel events (productId 1)",
    )
    parser.add_argument(
        "--redundant-callbacks",
        action="store_true",
        default=None,
        help="send every notification twice (Agora's redundant delivery)",
    )
    parser.add_argument(
        "--callback-retry-delays",
        default=None,
        metavar="S,S,S",
        help="emulated seconds before each retry (default 0,2,5)",
    )
    add_fault_arguments(parser, ENDPOINTS, _FAULT_FLAGS)


def fault_config_from_args(args: argparse.Namespace) -> FaultConfig:
    return fault_config(args, FaultConfig, _FAULT_FLAGS)


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The :class:`EmulatorConfig` the flags describe (unset flags keep the defaults)."""
    values = config_values(args, _CONFIG_FLAGS, ("rtc_events", "redundant_callbacks"))
    values["faults"] = fault_config_from_args(args)
    return EmulatorConfig(**values)


def main(args: argparse.Namespace) -> int:
    """Serve the emulator until interrupted; returns the process exit status."""
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as exc:
        print(f"agora emulator: {exc}", file=sys.stderr)
        return 2
    return serve(AgoraEmulator(config).app, args)


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agora-emulator", description=__doc__)
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(run())
