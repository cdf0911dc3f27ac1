"""Outcomes: what a provider call came to, as values the reconciler can act on.

Adapters translate every provider error into one of these at the boundary; nothing above the
adapters sees an HTTP status or a provider error code except as data kept for people to read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Failure:
    """A provider call that did not succeed. ``code`` and ``message`` are the provider's own."""

    code: int | str | None = None
    message: str = ""
    http_status: int | None = None
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Retryable(Failure):
    """A transient failure (5xx, timeouts, 65, 62...): retry the same call with backoff."""


@dataclass(frozen=True)
class RateLimited(Failure):
    """HTTP 429 or a quota (406 ``vendor_over_load``): slow down, then retry."""

    retry_after: float | None = None


@dataclass(frozen=True)
class ChannelEmpty(Failure):
    """Nobody is in the channel, or the recorder left for that reason: wait for a join."""


@dataclass(frozen=True)
class AlreadyRecording(Failure):
    """A task already exists for this identity (Agora 7 or 53): adopt it, never start another."""


@dataclass(frozen=True)
class Ended(Failure):
    """The session does not exist (any more): 404 ``failed to find worker``, 49, 435..."""


@dataclass(frozen=True)
class Rejected(Failure):
    """Needs a human: bad credentials, storage or parameters. No retry until the spec changes."""


@dataclass(frozen=True)
class WrongResource(Rejected):
    """The session exists but not under the resource the call named (Agora 1003 "sid does not
    match resourceId"): the call is right, the handle is not. Try the session's other
    candidate resources; never take it as an answer about the session itself."""


Outcome = Retryable | RateLimited | ChannelEmpty | AlreadyRecording | Ended | Rejected
