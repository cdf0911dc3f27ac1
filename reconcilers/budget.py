"""The query budget: how often each live session can be queried within the provider's rate limit.

Agora advises a ``query`` every one to two minutes per session (and within ``maxIdleTime``), but
its 10 requests/s per App ID cover only about 600 sessions at one query a minute, and starts and
stops need their share too. So the query interval is the advised one while it fits in ``share``
of the rate, and stretches with the number of live sessions once it does not, up to a ceiling.
``spread`` gives each key a fixed phase inside the interval so the queries are spread evenly
instead of arriving in bursts after a restart or a resync.

Pure: no I/O, no clock, no asyncio.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

__all__ = ["QueryBudget"]


@dataclass(frozen=True)
class QueryBudget:
    """Query interval sizing for ``rate_per_s`` provider requests/s, of which queries get ``share``.

    ``min_interval`` is the advised interval (the one used while the budget allows it),
    ``max_interval`` the longest the budget may stretch it to (keep it below the sessions'
    ``maxIdleTime``).
    """

    rate_per_s: float
    share: float = 0.5
    min_interval: float = 60.0
    max_interval: float = 600.0

    def __post_init__(self) -> None:
        if not 0 < self.rate_per_s < math.inf:
            raise ValueError(f"rate_per_s must be positive and finite, got {self.rate_per_s!r}")
        if not 0 < self.share <= 1:
            raise ValueError(f"share must be in (0, 1], got {self.share!r}")
        if not 0 < self.min_interval <= self.max_interval < math.inf:
            raise ValueError(
                "need 0 < min_interval <= max_interval, got "
                f"{self.min_interval!r} and {self.max_interval!r}"
            )

    @property
    def query_rate(self) -> float:
        """Queries per second the budget allows: ``rate_per_s * share``."""
        return self.rate_per_s * self.share

    @property
    def capacity(self) -> int:
        """Live sessions that can be queried every ``min_interval`` without stretching."""
        return math.floor(self.query_rate * self.min_interval + 1e-9)

    def needed(self, live_sessions: int) -> float:
        """The shortest interval at which ``live_sessions`` fit in the budget (uncapped)."""
        return max(0, live_sessions) / self.query_rate

    def interval(self, live_sessions: int) -> float:
        """Seconds between two queries of one session: ``min_interval`` unless the budget
        demands longer, and never more than ``max_interval``."""
        return min(self.max_interval, max(self.min_interval, self.needed(live_sessions)))

    def stretched(self, live_sessions: int) -> bool:
        """True when the budget demands an interval longer than ``min_interval``."""
        return self.needed(live_sessions) > self.min_interval

    def overcommitted(self, live_sessions: int) -> bool:
        """True when even ``max_interval`` spends more than ``share`` of the rate on queries."""
        return self.needed(live_sessions) > self.max_interval

    @staticmethod
    def spread(key: str, interval: float) -> float:
        """A stable phase offset for ``key`` in ``[0, interval)``, uniform over keys.

        Derived from a hash of the key (not Python's salted ``hash``), so it is the same in
        every process and after every restart.
        """
        if interval <= 0:
            return 0.0
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        fraction = int.from_bytes(digest, "big") / 2.0**64  # in [0, 1)
        return min(fraction * interval, math.nextafter(interval, 0.0))
