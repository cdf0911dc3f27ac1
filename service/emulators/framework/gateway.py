"""The request path both emulated REST gateways share: route lookup and injected faults.

What a provider answers (auth, rate-limit and error bodies, which errors may have applied) is its
own; how a seeded fault is played out on a request is the same for every emulator.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from service.emulators.framework.clock import Clock
from service.emulators.framework.faults import ApiFault, FaultInjector
from service.emulators.framework.ratelimit import RequestStats

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
