"""RealtimeKit's faults: its endpoints and plausible transient errors, for the shared injector.

The doc names no error bodies for RealtimeKit; the transient ones here are the gateway statuses
any Cloudflare API may answer (500, 502, 503), and a hung request ends in 504. A 502 or 504 may
have been carried out (``side_effect_rate``), like Agora's 65/62.
"""

from __future__ import annotations

from typing import ClassVar

from service.emulators.framework import faults as framework
from service.emulators.framework.faults import ProviderErrors

ENDPOINTS = ("start", "get", "list", "active", "stop", "pause", "resume")

_TRANSIENT = (
    (500, 500, "Internal Server Error"),
    (502, 502, "Bad Gateway"),
    (503, 503, "Service Unavailable"),
)
ERRORS = ProviderErrors(
    dict.fromkeys(ENDPOINTS, _TRANSIENT),
    timeout=(504, 504, "Gateway Timeout"),
    may_have_applied=frozenset({502, 504}),
)


class FaultConfig(framework.FaultConfig):
    __doc__ = framework.FaultConfig.__doc__
    ENDPOINTS: ClassVar[tuple[str, ...]] = ENDPOINTS


#: The shared injector, on RealtimeKit's endpoints.
FaultInjector = framework.FaultInjector[FaultConfig]
