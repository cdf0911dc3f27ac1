"""The request path both emulated REST gateways share: route lookup, the request statistics,
the rate limit, and injected faults.

What a provider answers (auth, rate-limit and error bodies, which errors may have applied) and
in which order it checks a request is its own (:meth:`Gateway.serve`); how a request is counted,
limited, and how a seeded fault is played out on it is the same for every emulator.
"""

from __future__ import annotations

import abc
import asyncio
import re
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from service.emulators.framework.clock import Clock
from service.emulators.framework.faults import ApiFault, FaultInjector
from service.emulators.framework.ratelimit import RateLimiter, RequestStats

T = TypeVar("T")

#: (HTTP method, path pattern, endpoint name), tried in order.
RouteTable = tuple[tuple[str, re.Pattern[str], str], ...]


def match_route(routes: RouteTable, method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The endpoint and path parameters of the first route matching, else ``None``."""
    for route_method, pattern, endpoint in routes:
        found = pattern.match(path)
        if found is not None and route_method == method:
            return endpoint, found.groupdict()
    return None


async def inject_faults(
    faults: FaultInjector[Any],
    stats: RequestStats,
    clock: Clock,
    endpoint: str,
    carry_out: Callable[[], object],
) -> ApiFault | None:
    """Injected latency, then the fault drawn for ``endpoint`` if any: counted in ``stats``,
    carried out first when it "reached the backend" (``carry_out``), and hung for a timeout.
    The caller answers the returned fault in its provider's shape."""
    latency = faults.latency()
    if latency > 0:
        await asyncio.sleep(latency)
    fault = faults.api_fault(endpoint)
    if fault is None:
        return None
    stats.faults[f"{endpoint} {fault.code}{' hang' if fault.hang else ''}"] += 1
    if fault.apply:
        clock.run_due()
        carry_out()
    if fault.hang > 0:
        await asyncio.sleep(fault.hang)
    return fault


class GatewayHost(Protocol):
    """What a gateway uses of its emulator."""

    @property
    def clock(self) -> Clock: ...
    @property
    def faults(self) -> FaultInjector[Any]: ...
    @property
    def stats(self) -> RequestStats: ...
    def qps_limit(self) -> float | None: ...
    def wake(self) -> None: ...


class Gateway(abc.ABC):
    """Serves every non-control path (``handle`` is the Starlette endpoint): the routes in
    ``routes``, answered by the provider's :meth:`serve`; any other path by :meth:`no_route`.

    Every request first wakes the ``host`` (its clock driver starts lazily) and runs its due
    timers; the rate limit in force is the host's ``qps_limit()`` (it may change with faults).
    """

    def __init__(self, routes: RouteTable, host: GatewayHost) -> None:
        self._routes = routes
        self._clock = host.clock
        self._faults = host.faults
        self._stats = host.stats
        self._limiter = RateLimiter(host.clock.rate_time)
        self._qps_limit = host.qps_limit
        self._on_request = host.wake

    async def handle(self, request: Request) -> Response:
        self._on_request()
        self._clock.run_due()
        found = match_route(self._routes, request.method, request.url.path)
        if found is None:
            self._stats.received("unmatched")
            self._stats.answered("unmatched", 404)
            return self.no_route()
        endpoint, params = found
        response = await self.serve(request, endpoint, params)
        self._stats.answered(endpoint, response.status_code)
        return response

    @abc.abstractmethod
    def no_route(self) -> Response:
        """The provider's 404 for a path it does not serve."""

    @abc.abstractmethod
    async def serve(self, request: Request, endpoint: str, params: dict[str, str]) -> Response:
        """The provider's answer to a routed request; it counts it (``received``) where the
        provider does, checks it in the provider's order, then calls :meth:`_admit` and
        :meth:`_carry_out`."""

    def _admit(self, account: str) -> bool:
        """Whether ``account`` is within the rate limit; an admitted request is counted."""
        if not self._limiter.allow(account, self._qps_limit()):
            return False
        self._stats.accepted()
        return True

    async def _carry_out(self, endpoint: str, operation: Callable[[], T]) -> T | ApiFault:
        """``operation``'s answer, or the fault injected instead (``operation`` may then have
        been carried out all the same, see :func:`inject_faults`)."""
        fault = await inject_faults(self._faults, self._stats, self._clock, endpoint, operation)
        if fault is not None:
            return fault
        self._clock.run_due()
        return operation()
