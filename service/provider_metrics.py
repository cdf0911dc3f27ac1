"""Metrics of the calls to the providers: how each was answered, and how long it waited for the
rate limit. What the alerts on provider errors and a saturated rate budget read.

The answer is counted at the transport, beneath each provider's client, so that every call is
seen however the adapter classes it; labels come from closed sets (the provider's name and the
status class), never from a URL or an id.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram

from reconcilers.providers.registry import names as provider_names

#: Status classes: ``429`` apart from other 4xx (it is the rate limit, not a mistake); ``error``
#: is no answer at all (refused, reset, timed out).
STATUS_CLASSES = ("2xx", "3xx", "4xx", "429", "5xx", "error")
#: The providers' names, the ``provider`` label's values.
PROVIDERS = provider_names()
_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def status_class(status: int) -> str:
    return "429" if status == 429 else f"{status // 100}xx"


class ProviderMetrics:
    def __init__(self, registry: CollectorRegistry, providers: tuple[str, ...]) -> None:
        self.responses = Counter(
            "provider_responses",
            "Provider API answers by provider and status class (error: no answer)",
            ["provider", "status"],
            registry=registry,
        )
        self.rate_wait = Histogram(
            "provider_rate_limit_wait_seconds",
            "How long a provider call waited for the rate limit before it was sent",
            ["provider"],
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )
        unknown = set(providers) - set(PROVIDERS)
        if unknown:
            raise ValueError(f"unknown providers {sorted(unknown)}")
        for provider in providers:  # every series exists from the start, at 0
            self.rate_wait.labels(provider)
            for status in STATUS_CLASSES:
                self.responses.labels(provider, status)

    def transport(self, provider: str, inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        return CountedTransport(inner, self.responses, provider)

    def timed(
        self, provider: str, gate: Callable[[], Awaitable[None]]
    ) -> Callable[[], Awaitable[None]]:
        """``gate`` (the ``before_request`` hook), its wait observed."""
        histogram = self.rate_wait.labels(provider)

        async def before_request() -> None:
            started = time.monotonic()
            try:
                await gate()
            finally:
                histogram.observe(time.monotonic() - started)

        return before_request


class CountedTransport(httpx.AsyncBaseTransport):
    """Counts every answer (or its absence) of the transport it wraps."""

    def __init__(self, inner: httpx.AsyncBaseTransport, counter: Counter, provider: str) -> None:
        self._inner = inner
        self._children = {s: counter.labels(provider, s) for s in STATUS_CLASSES}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError:
            self._children["error"].inc()
            raise
        child = self._children.get(status_class(response.status_code))
        if child is not None:
            child.inc()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
