"""Agora's faults: its endpoints and the transient errors each is documented to return
(``docs/providers/agora.md`` §1-§6), for the shared seeded injector of
:mod:`service.emulators.framework.faults`.
"""

from __future__ import annotations

from typing import ClassVar

from service.emulators.framework import faults as framework
from service.emulators.framework.faults import ErrorTable, ProviderErrors

ENDPOINTS = ("acquire", "start", "query", "update", "updateLayout", "stop")

#: (HTTP status, code, reason) of the transient errors each endpoint is documented to return.
TRANSIENT_ERRORS: ErrorTable = {
    "acquire": (
        (500, 500, "internal_error"),
        (500, 501, "no_worker_manager_available"),
        (500, 504, "allocate_timeout"),
    ),
    "start": (
        (206, 65, "request not completed"),
        (500, 62, "request timeout"),
        (500, 502, "Failed to allocate worker"),
    ),
    "query": ((206, 65, "request not completed"), (504, 62, "request timeout")),
    "update": ((206, 65, "request not completed"), (504, 62, "request timeout")),
    "updateLayout": ((206, 65, "request not completed"), (504, 62, "request timeout")),
    "stop": ((206, 65, "request not completed"), (504, 62, "request timeout")),
}

#: 65 and 62 mean "the request reached the backend": the operation may have happened.
ERRORS = ProviderErrors(
    TRANSIENT_ERRORS,
    timeout=(504, 62, "request timeout"),
    may_have_applied=frozenset({65, 62}),
)


class FaultConfig(framework.FaultConfig):
    __doc__ = framework.FaultConfig.__doc__
    ENDPOINTS: ClassVar[tuple[str, ...]] = ENDPOINTS


#: The shared injector, on Agora's endpoints.
FaultInjector = framework.FaultInjector[FaultConfig]
