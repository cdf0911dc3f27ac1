"""The emulator's settings, as one frozen value handed to :class:`AgoraEmulator`.

Defaults follow Agora's documented numbers (10 QPS per App ID, 50 concurrent tasks, 5-minute
resource TTL, 30 s failover, at most 3 failovers, 10 s callback timeout, 3 retries) and are
usable with no flags at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from service.emulators.framework.config import EmulatorSettings

from .faults import FaultConfig

NotFoundForm = Literal["short", "long", "alternate"]
ChannelProfile = Literal["communication", "live"]


@dataclass(frozen=True)
class EmulatorConfig(EmulatorSettings):
    """Every setting of one emulated Agora project (one App ID), on the shared ones.

    Time values are emulated seconds unless the name says otherwise. ``qps_limit`` is per App
    ID. ``rtc_callback_url``/``rtc_ncs_secret`` route the RTC channel events (productId 1)
    elsewhere; by default they share the recording ones.
    """

    app_id: str = "emulator-app"
    customer_key: str = "emulator-key"
    customer_secret: str = "emulator-secret"
    app_certificate: str | None = None
    ncs_secret: str = "emulator-ncs-secret"
    callback_url: str | None = None
    rtc_callback_url: str | None = None
    rtc_ncs_secret: str | None = None
    rtc_events: bool = True
    max_concurrent_tasks: int = 50
    resource_ttl: float = 300.0
    slice_seconds: float = 10.0
    startup_seconds: float = 2.0
    exit_seconds: float = 2.0
    failover_seconds: float = 30.0
    max_failovers: int = 3
    progress_interval: float = 60.0
    mp4_rollover_seconds: float = 7200.0
    not_found_form: NotFoundForm = "short"
    default_profile: ChannelProfile = "communication"
    redundant_callbacks: bool = False
    faults: FaultConfig = field(default_factory=FaultConfig, kw_only=True)

    def __post_init__(self) -> None:
        if not self.app_id:
            raise ValueError("app_id must not be empty")
        super().__post_init__()
        positive = {
            "resource_ttl": self.resource_ttl,
            "slice_seconds": self.slice_seconds,
            "mp4_rollover_seconds": self.mp4_rollover_seconds,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0")
        non_negative = {
            "startup_seconds": self.startup_seconds,
            "exit_seconds": self.exit_seconds,
            "failover_seconds": self.failover_seconds,
            "progress_interval": self.progress_interval,
            "max_failovers": self.max_failovers,
            "max_concurrent_tasks": self.max_concurrent_tasks,
        }
        for name, value in non_negative.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.not_found_form not in ("short", "long", "alternate"):
            raise ValueError("not_found_form must be short, long or alternate")
        if self.default_profile not in ("communication", "live"):
            raise ValueError("default_profile must be communication or live")
