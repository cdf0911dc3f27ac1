"""The settings every emulator has: its clock, seed, request limit, callback sender and faults.

A provider's config extends :class:`EmulatorSettings` with its own identity and timings, and
may give a shared field its own default (RealtimeKit allows 20 requests a second, Agora 10).
The shared fields are keyword-only, so a provider's own fields keep their positional order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.emulators.framework.faults import FaultConfig


@dataclass(frozen=True, kw_only=True)
class EmulatorSettings:
    """What the shared machinery reads. Times are emulated seconds unless named real.

    ``speed == 0`` gives a manual clock (tests call ``advance``); ``epoch`` pins the emulated
    start time (default: a fixed instant for manual clocks, the real time otherwise).
    ``qps_limit`` of ``None`` or ``0`` disables the rate limit. ``callback_timeout`` is real
    seconds to wait for a callback's answer; ``callback_retry_delays`` the emulated seconds
    before each resend; ``callback_log_size`` how many deliveries the control API keeps.
    """

    seed: int = 0
    speed: float = 1.0
    epoch: float | None = None
    qps_limit: float | None = 10.0
    callback_timeout: float = 10.0
    callback_retry_delays: tuple[float, ...] = (0.0, 2.0, 5.0)
    callback_concurrency: int = 8
    callback_log_size: int = 10_000
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if self.speed < 0:
            raise ValueError("speed must be >= 0 (0 = manual clock)")
        if self.qps_limit is not None and self.qps_limit < 0:
            raise ValueError("qps_limit must be >= 0")
        if self.callback_timeout <= 0:
            raise ValueError("callback_timeout must be > 0")
        if self.callback_concurrency < 1:
            raise ValueError("callback_concurrency must be >= 1")
        if any(d < 0 for d in self.callback_retry_delays):
            raise ValueError("callback_retry_delays must be >= 0")
