"""A provider's ``Retry-After`` reaches the workqueue: a ``RateLimited`` outcome's
``retry_after`` becomes the pass's ``Retry(min_delay=...)``, and the workers schedule the key
no sooner than that whatever the backoff says."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconcilers.engine import Reconciler
from reconcilers.events import NewEvent
from reconcilers.outcomes import Outcome, RateLimited, Retryable
from reconcilers.projections import PROJECTIONS
from reconcilers.providers.base import (
    ChannelUsers,
    Mode,
    Reservation,
    SessionHandle,
    SessionStatus,
    StartRequest,
    StopResult,
    StorageTarget,
)
from reconcilers.workqueue import Retry
from service.store import open_store

STORAGE = StorageTarget("s3", "bucket", "us-east-1", "AKIATEST", "secret-key-for-tests")
NOW = datetime(2026, 1, 6, 10, 30, tzinfo=UTC)


class Throttled:
    """A provider whose every reserve is answered 429 with a ``Retry-After``."""

    name = "agora"

    def __init__(self, *failures: Outcome) -> None:
        self.failures = list(failures)

    def validate_options(self, mode: Mode, options: dict[str, Any]) -> dict[str, Any]:
        return options

    async def reserve(self, request: StartRequest) -> Reservation | Outcome:
        return self.failures.pop(0)

    async def start(self, request: StartRequest, reservation: Reservation) -> Outcome:
        raise AssertionError("never reached")

    async def query(self, handle: SessionHandle) -> SessionStatus | Outcome:
        raise AssertionError("never reached")

    async def update(self, handle: SessionHandle, options: dict[str, Any]) -> Outcome | None:
        return None

    async def stop(self, handle: SessionHandle) -> StopResult | Outcome:
        raise AssertionError("never reached")

    async def channel_users(self, channel: str) -> ChannelUsers | Outcome | None:
        return None

    async def aclose(self) -> None:
        return None


async def _pass(tmp_path: Path, provider: Throttled) -> Any:
    store = await open_store(f"sqlite:///{tmp_path / 'e.db'}", PROJECTIONS)
    try:
        spec = {"state": "recording", "provider": "agora", "mode": "mix", "channel": "standup"}
        await store.append(NewEvent(
            source="api", dedup_key="k", type="room.desired", room="acme/standup",
            payload={"tenant": "acme", "name": "standup", "spec": spec,
                     "channel_key": "agora/standup"},
            occurred_at=NOW,
        ))
        reconciler = Reconciler(store, {"agora": provider}, lambda _: STORAGE, clock=lambda: NOW)
        return (await reconciler.reconcile("acme/standup")).result
    finally:
        await store.close()


async def test_a_429_retry_after_is_the_requeue_minimum(tmp_path: Path) -> None:
    result = await _pass(tmp_path, Throttled(RateLimited(429, "slow down", 429, retry_after=17)))
    assert isinstance(result, Retry) and result.min_delay == 17


async def test_a_transient_failure_without_retry_after_keeps_the_backoff(tmp_path: Path) -> None:
    result = await _pass(tmp_path, Throttled(Retryable(62, "request timeout", 504)))
    assert isinstance(result, Retry) and result.min_delay == 0
