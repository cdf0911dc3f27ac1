"""What the projections' folds share, whichever provider an event comes from.

The provider packages fold their own events (``reconcilers.providers.<name>.folds``) into rows
of the same shape as the provider-neutral projections do; these are the pieces both sides use:
when an event counts as having happened, how a channel's rows are keyed, how a channel forgets
who left it, how a recording segment gathers its files. Pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import Any

from reconcilers.events import Event

#: The sources whose events carry our own clock; every other source is a provider's.
_OUR_SOURCES = frozenset({"api", "reconciler"})

#: A user who left a channel this long ago (our clock) is forgotten: a channel's row would
#: otherwise hold everyone who ever joined it. Agora keeps a user's state 60 s after a leave
#: to absorb late and duplicate events; an event of a user not known that is no newer than
#: the newest forgotten one (``forgot_ts``, in the events' own seconds) is taken as late.
FORGET_LEFT_MS = 10 * 60 * 1000

#: The projection a provider's presence fold returns rows of.
PRESENCE = "presence"


def event_ms(event: Event) -> int:
    """When an event counts as having happened, in our time.

    A provider's own clock (``occurred_at``) may be skewed against ours, and liveness compares
    against our clock: so what a provider says counts from when we *received* it. Our own
    events (API, reconciler) carry our clock in ``occurred_at``.
    """
    if event.source not in _OUR_SOURCES:
        return int(event.received_at.timestamp() * 1000)
    return provider_ms(event)


def provider_ms(event: Event) -> int:
    """When the sender says the event happened: to order a provider's events among themselves."""
    return int((event.occurred_at or event.received_at).timestamp() * 1000)


def channel_key(provider: str, channel: str) -> str:
    return f"{provider}/{channel}"


def forget_left(data: dict[str, Any], users: dict[str, Any], at: int) -> None:
    """Drop the users who left over ``FORGET_LEFT_MS`` ago; remember the newest ``ts`` they
    had, so that their late events are known as late."""
    for uid in [u for u, v in users.items() if not v.get("present")]:
        user = users[uid]
        if at - int(user.get("at") or at) > FORGET_LEFT_MS:
            del users[uid]
            ts = user.get("ts")
            if isinstance(ts, int) and not after(data.get("forgot_ts"), ts):
                data["forgot_ts"] = ts


def after(then: int | None, destroyed: int | None) -> bool:
    """Whether something stamped ``then`` happened after a 102 stamped ``destroyed``."""
    return then is not None and destroyed is not None and then > destroyed


def add_files(data: dict[str, Any], files: list[Any]) -> None:
    """Add files (names, or values with ``name`` and ``slice_start_ms``) to a recording
    segment's ``files``."""
    for item in files:
        if isinstance(item, str):
            name, start = item, None
        else:
            name, start = item.name, item.slice_start_ms
        if not name:
            continue
        entry = data["files"].setdefault(name, {})
        if start is not None:
            entry["slice_start_ms"] = start
