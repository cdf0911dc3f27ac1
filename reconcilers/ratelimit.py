"""A fair asyncio token bucket: one per provider account, in front of every provider call.

Agora allows 10 requests per second per App ID across the whole REST API, so every call (start,
stop, query...) takes a token from one shared bucket. Waiters are served strictly first come,
first served, so a steady stream of small requests cannot starve an earlier one. Waiting costs
one loop timer for the whole bucket, set for the moment the head waiter's tokens will have
accrued: no polling. The rate can be changed at run time (to back off after a 429, say) and
takes effect for the waiters already queued.

Time is read from ``clock`` (the running loop's ``time()`` by default) and waited for with the
loop's timers, so a virtual-time loop makes rate tests exact and instant.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

__all__ = ["TokenBucket", "limiter_burst", "provider_limiter", "safe_rate"]

#: Token arithmetic is in floats: a waiter short of its tokens by less than this is served, so
#: a refill that lands a rounding error below ``n`` does not arm a zero-length timer forever.
_EPSILON: Final = 1e-9
#: The shortest timer armed; it bounds wake-ups per second if ``rate`` is enormous.
_MIN_DELAY: Final = 1e-4


@dataclass(eq=False)
class _Waiter:
    n: float
    since: float
    future: asyncio.Future[None] = field(repr=False)


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst`` (full at start).

    ``acquire(n)`` waits its turn (FIFO) and takes ``n`` tokens; ``try_acquire(n)`` takes them
    only if that needs no waiting and nobody is queued ahead.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        _check_rate(rate)
        burst = max(1.0, rate) if burst is None else burst
        if not burst > 0:
            raise ValueError(f"burst must be > 0, got {burst!r}")
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._last: float | None = None
        self._waiters: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None
        #: Grants so far, and the seconds they spent queued in total (for metrics).
        self.acquired = 0
        self.waited_seconds = 0.0

    # -- introspection --------------------------------------------------------------------

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    @property
    def waiters(self) -> int:
        """Acquires queued and not yet granted."""
        return len(self._waiters)

    @property
    def tokens(self) -> float:
        """Tokens available now (before queued waiters take theirs)."""
        self._refill()
        return self._tokens

    # -- taking -------------------------------------------------------------------------------

    def try_acquire(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if they are there and nobody is waiting; never waits."""
        self._check_n(n)
        self._refill()
        if self._waiters or self._tokens < n - _EPSILON:
            return False
        self._tokens -= n
        self.acquired += 1
        return True

    async def acquire(self, n: float = 1.0) -> None:
        """Wait, behind every earlier waiter, until ``n`` tokens are available; take them.

        Cancelling a waiter removes it from the line (or, if its tokens were already granted,
        gives them back), so the next waiter does not pay for it.
        """
        if self.try_acquire(n):
            return
        waiter = _Waiter(n, self._now(), asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            self._schedule()
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.cancelled():
                if waiter in self._waiters:  # ``_pump`` may have dropped it already
                    self._waiters.remove(waiter)
            else:  # granted, then cancelled before it could run: refund
                self._refill()
                self._tokens = min(self._burst, self._tokens + n)
                self.acquired -= 1
            self._pump()
            raise

    def set_rate(self, rate: float) -> None:
        """Change the refill rate from now on; queued waiters are rescheduled at the new rate."""
        _check_rate(rate)
        if self._last is not None:
            self._refill()  # tokens accrued so far count at the old rate
        self._rate = rate
        if self._waiters:
            self._schedule()

    # -- internals ----------------------------------------------------------------------------

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    def _check_n(self, n: float) -> None:
        if not 0 < n <= self._burst:
            raise ValueError(f"n must be in (0, burst={self._burst}], got {n!r}")

    def _refill(self) -> float:
        """Add the tokens accrued since the last look; return the clock reading."""
        now = self._now()
        if self._last is not None and now > self._last:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        if self._last is None or now > self._last:
            self._last = now
        return now

    def _pump(self) -> None:
        """Grant waiters from the head while tokens last, then re-arm the timer."""
        self._timer = None
        now = self._refill()
        waiters = self._waiters
        while waiters:
            head = waiters[0]
            if head.future.done():  # cancelled; its task removes it, but do not block on it
                waiters.popleft()
                continue
            if self._tokens < head.n - _EPSILON:
                break
            waiters.popleft()
            self._tokens -= head.n
            self.acquired += 1
            self.waited_seconds += max(0.0, now - head.since)
            head.future.set_result(None)
        self._schedule()

    def _schedule(self) -> None:
        """Arm the single timer for when the head waiter's tokens will have accrued."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiters:
            return
        self._refill()
        deficit = self._waiters[0].n - self._tokens
        delay = max(_MIN_DELAY, deficit / self._rate)
        self._timer = asyncio.get_running_loop().call_later(delay, self._pump)


def _check_rate(rate: float) -> None:
    if not 0 < rate < float("inf"):
        raise ValueError(f"rate must be a positive finite number of tokens/s, got {rate!r}")


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
