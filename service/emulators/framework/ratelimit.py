"""The per-App-ID request limit (HTTP 429) and the request statistics tests check against.

Agora's gateway is Kong (its 404/401/429 bodies are Kong's), whose rate limiting counts
requests in fixed one-second windows; the emulator does the same. Windows are measured on
:meth:`Clock.rate_time`: real time when the clock runs, emulated time when it is manual.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any


class RateLimiter:
    """At most ``limit`` accepted requests per App ID per one-second window."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._windows: dict[str, tuple[int, int]] = {}

    def allow(self, app_id: str, limit: float | None) -> bool:
        if not limit:
            return True
        window = math.floor(self._now())
        start, count = self._windows.get(app_id, (window, 0))
        if start != window:
            count = 0
        if count + 1 > limit:
            return False
        self._windows[app_id] = (window, count + 1)
        return True


class RequestStats:
    """Requests and responses per endpoint, 429s, and the busiest one-second window seen."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.requests: Counter[str] = Counter()
        self.responses: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.rate_limited = 0
        self.max_qps = 0
        self.max_accepted_qps = 0
        self._window = -1
        self._received = 0
        self._accepted = 0

    def _roll(self) -> None:
        window = math.floor(self._now())
        if window != self._window:
            self._window, self._received, self._accepted = window, 0, 0

    def received(self, endpoint: str) -> None:
        self._roll()
        self.requests[endpoint] += 1
        self._received += 1
        self.max_qps = max(self.max_qps, self._received)

    def accepted(self) -> None:
        """A request that passed auth and the rate limit."""
        self._roll()
        self._accepted += 1
        self.max_accepted_qps = max(self.max_accepted_qps, self._accepted)

    def answered(self, endpoint: str, status: int) -> None:
        self.responses[f"{endpoint} {status}"] += 1
        if status == 429:
            self.rate_limited += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "responses": dict(self.responses),
            "faults": dict(self.faults),
            "rate_limited": self.rate_limited,
            "max_qps": self.max_qps,
            "max_accepted_qps": self.max_accepted_qps,
        }
