"""Command line: run the emulator as a real HTTP server (``recctl emulate agora``).

Every :class:`EmulatorConfig` and :class:`FaultConfig` setting is a flag; with no flags the
emulator serves App ID ``emulator-app`` with key/secret ``emulator-key``/``emulator-secret``
on 127.0.0.1:8081 at real-time speed.
"""

from __future__ import annotations

from service.emulators.framework.cli import CLOCK_FLAGS, EmulatorCommand, Flags, Switch

from .config import EmulatorConfig
from .emulator import AgoraEmulator
from .faults import FaultConfig

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
    *CLOCK_FLAGS,
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

COMMAND: EmulatorCommand[EmulatorConfig, AgoraEmulator] = EmulatorCommand(
    name="agora",
    description=__doc__,
    port=8081,
    settings=EmulatorConfig,
    faults=FaultConfig,
    build=AgoraEmulator,
    config_flags=_CONFIG_FLAGS,
    fault_flags=_FAULT_FLAGS,
    switches=(
        Switch(
            "--no-rtc-events", "rtc_events", False, "do not send RTC channel events (productId 1)"
        ),
        Switch(
            "--redundant-callbacks",
            "redundant_callbacks",
            True,
            "send every notification twice (Agora's redundant delivery)",
        ),
    ),
    retry_help="emulated seconds before each retry (default 0,2,5)",
)


#: The module's interface (``recctl emulate`` and ``__main__`` call it), as the command's methods.
add_arguments = COMMAND.add_arguments
config_from_args = COMMAND.config_from_args
main = COMMAND.main
run = COMMAND.run


if __name__ == "__main__":
    raise SystemExit(run())
