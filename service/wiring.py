"""Wiring: turn settings into the domain's collaborators (providers, storage targets, config).

The one place that knows which backend serves which name; ``create_app`` and the CLI call it.
"""

from __future__ import annotations

from collections.abc import Callable

from reconcilers.identity import UidRange
from reconcilers.plan import PlanConfig
from reconcilers.providers.base import StorageTarget
from reconcilers.ratelimit import TokenBucket
from service.config import Settings, StorageProfile


def storage_target(profile: StorageProfile) -> StorageTarget:
    return StorageTarget(
        kind=profile.kind,
        bucket=profile.bucket,
        region=profile.region,
        access_key_id=profile.access_key_id.get_secret_value(),
        secret_access_key=profile.secret_access_key.get_secret_value(),
        endpoint=profile.endpoint,
        prefix=tuple(profile.prefix),
    )


def storage_resolver(settings: Settings) -> Callable[[str], StorageTarget]:
    targets = {name: storage_target(p) for name, p in settings.storage_profiles.items()}

    def resolve(name: str) -> StorageTarget:
        try:
            return targets[name]
        except KeyError:
            raise LookupError(f"storage profile {name!r} is not configured") from None

    return resolve


def plan_config(settings: Settings) -> PlanConfig:
    return PlanConfig(
        uids=UidRange(settings.agora_recorder_uid_base, settings.agora_recorder_uid_span),
        query_interval=settings.query_interval_seconds,
        stall_threshold=settings.stall_threshold_seconds,
        failover_window=settings.failover_window_seconds,
        # A stop begun with no result in a query interval died with its process (chaos seed
        # 100): stopped again within the orphan bound (2 query intervals + failover window).
        stop_retry_after=settings.query_interval_seconds,
    )


def limiter_burst(limit: float) -> int:
    """Tokens the provider's bucket holds: one per 50 calls/s of limit (at least one), so that a
    call the event loop is a little late for (up to 20 ms) is caught up instead of lost."""
    return max(1, int(limit // 50))


def safe_rate(limit: float) -> float:
    """The steady rate that keeps every one-second window at or under a provider's ``limit``.

    A bucket holding ``b`` tokens admits ``b + rate`` calls in any second, so it runs at
    ``limit - b``: Agora counts requests per second per App ID, and how it draws its windows
    is not documented, so no window may see more than the limit.
    """
    return limit - limiter_burst(limit) if limit >= 2 else limit / 2


def provider_limiter(limit: float, clock: Callable[[], float] | None = None) -> TokenBucket:
    """The token bucket in front of every call to one provider account (see :func:`safe_rate`)."""
    burst = limiter_burst(limit) if limit >= 2 else 1
    return TokenBucket(safe_rate(limit), burst=burst, clock=clock)
