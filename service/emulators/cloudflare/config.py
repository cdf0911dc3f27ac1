"""The Cloudflare emulator's settings, as one frozen value.

Defaults follow ``docs/providers/cloudflare.md``: one active recording per meeting, auto-stop after
60 s in an empty meeting and at ``max_seconds`` (default 24 h), recordings under ~5 s end
``ERRORED``, retries only for 5xx and network errors. What the doc leaves open is a setting: the
start and upload durations, the retry count and delays (undocumented for RealtimeKit), whether the
delivery id is stable across retries (RealtimeKit: per delivery; Dyte: per event), and whether
``INVOKED`` sends a webhook.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.emulators.framework.config import EmulatorSettings

from .faults import FaultConfig


@dataclass(frozen=True)
class EmulatorConfig(EmulatorSettings):
    """Every setting of one emulated RealtimeKit app, on the shared ones. Times are emulated
    seconds.

    ``private_key_pem`` signs the webhooks (a fresh 2048-bit key when ``None``).
    """

    account_id: str = "emulator-account"
    app_id: str = "emulator-app"
    api_token: str = "emulator-token"
    private_key_pem: str | None = None
    webhook_url: str | None = None
    webhook_id: str = "emulator-webhook"
    qps_limit: float | None = field(default=20.0, kw_only=True)
    invoke_seconds: float = 2.0
    upload_seconds: float = 5.0
    empty_timeout: float = 60.0
    min_recording_seconds: float = 5.0
    default_max_seconds: int = 86_400
    invoked_webhook: bool = False
    stable_delivery_id: bool = False
    callback_retry_delays: tuple[float, ...] = field(default=(1.0, 5.0, 30.0), kw_only=True)
    faults: FaultConfig = field(default_factory=FaultConfig, kw_only=True)

    def __post_init__(self) -> None:
        if not self.account_id or not self.app_id:
            raise ValueError("account_id and app_id must not be empty")
        super().__post_init__()
        for name in ("invoke_seconds", "upload_seconds", "empty_timeout", "min_recording_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
