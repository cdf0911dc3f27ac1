"""What a pass's actions came to: one ``(action, outcome)`` value per step, kept as values.

The executor reports an outcome for every action: one of the successes here, or the adapter's
own :data:`reconcilers.outcomes.Outcome` (a failure). The engine turns a report into the pass's
workqueue result, the controller counts it by ``label`` (a closed set, fit for a metric) and
logs its ``detail`` (which may name a session: for people only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias, get_args

from reconcilers.actions import Action, Query, Stop
from reconcilers.outcomes import (
    AlreadyRecording,
    ChannelEmpty,
    Ended,
    Failure,
    Outcome,
    RateLimited,
    Rejected,
    Retryable,
)


@dataclass(frozen=True)
class Reserved:
    """The provider handed out a resource (``None``: a provider that needs none)."""

    resource_id: str | None


@dataclass(frozen=True)
class Started:
    sid: str


@dataclass(frozen=True)
class Adopted:
    sid: str


@dataclass(frozen=True)
class Queried:
    """The provider's answer about a session, in neutral terms (``SessionState``)."""

    state: str


@dataclass(frozen=True)
class Present:
    """How many people (not recorders of ours) the provider says are in the channel."""

    users: int


@dataclass(frozen=True)
class Stopped:
    sid: str


@dataclass(frozen=True)
class Updated:
    sid: str


@dataclass(frozen=True)
class Skipped:
    """Nothing to act on (no session handle, nothing desired), or the provider cannot tell."""

    why: str


Success: TypeAlias = Reserved | Started | Adopted | Queried | Present | Stopped | Updated | Skipped
ActionOutcome: TypeAlias = Success | Outcome

OutcomeLabel = Literal[
    "reserved",
    "started",
    "adopted",
    "queried",
    "not_found",
    "presence",
    "stopped",
    "already_ended",
    "updated",
    "skipped",
    "retryable",
    "rate_limited",
    "channel_empty",
    "already_recording",
    "ended",
    "rejected",
]
"""What an action came to, as a metric label: a closed set (the detail, which may name a
session, goes only to the log and the CLI)."""

ACTION_OUTCOMES: frozenset[str] = frozenset(get_args(OutcomeLabel))

_SUCCESS_LABELS: dict[type[Success], OutcomeLabel] = {
    Reserved: "reserved",
    Started: "started",
    Adopted: "adopted",
    Queried: "queried",
    Present: "presence",
    Stopped: "stopped",
    Updated: "updated",
    Skipped: "skipped",
}

_FAILURE_LABELS: dict[type[Failure], OutcomeLabel] = {
    Retryable: "retryable",
    RateLimited: "rate_limited",
    ChannelEmpty: "channel_empty",
    AlreadyRecording: "already_recording",
    Ended: "ended",
    Rejected: "rejected",
}


def failure_label(failure: Failure) -> OutcomeLabel:
    """A failure's label, by its nearest labelled class (``WrongResource`` is ``rejected``)."""
    for cls in type(failure).__mro__:
        if cls in _FAILURE_LABELS:
            return _FAILURE_LABELS[cls]
    return "retryable"


@dataclass(frozen=True)
class ActionDone:
    """One action and what it came to."""

    action: Action
    outcome: ActionOutcome

    @property
    def label(self) -> OutcomeLabel:
        match self.action, self.outcome:
            case Query(), Ended():
                return "not_found"  # an answer about the session, not a failed call
            case Stop(), Ended():
                return "already_ended"
            case _, Failure() as failure:
                return failure_label(failure)
            case _, success:
                return _SUCCESS_LABELS[type(success)]

    @property
    def detail(self) -> str:
        """For people: the session, resource or provider code the outcome is about."""
        match self.action, self.outcome:
            case Query() | Stop(), Ended(code=code):
                return str(code)
            case _, Failure(code=code, message=message):
                return f"{code} {message}".strip()
            case _, Reserved(resource_id=resource_id):
                return str(resource_id)
            case _, Started(sid=sid) | Adopted(sid=sid) | Stopped(sid=sid) | Updated(sid=sid):
                return sid
            case _, Queried(state=state):
                return state
            case _, Present(users=users):
                return f"{users} in the channel" if users else "nobody in the channel"
            case _, Skipped(why=why):
                return why
        return ""


@dataclass
class ExecutionReport:
    """What a pass did, in the order it was done."""

    done: list[ActionDone] = field(default_factory=list)

    def record(self, action: Action, outcome: ActionOutcome) -> None:
        self.done.append(ActionDone(action, outcome))
