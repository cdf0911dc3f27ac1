"""Which provider events are worth waking a room's pass for.

Every event is stored and folded into the projections; waking a pass is only a hint (requeues
and the periodic resync find everything again). Each provider says which of its events only
report progress (its bundle's ``wakes`` and ``wakes_channel``, e.g.
:mod:`reconcilers.providers.agora.wakes`); our own events and storage events always wake.
"""

from __future__ import annotations

from reconcilers.events import Event
from reconcilers.identity import UidRange
from reconcilers.providers import registry


def wakes(event: Event, uids: UidRange) -> bool:
    """Whether ``event`` should wake the passes of the keys it concerns now."""
    provider = registry.find(event.source)
    return provider is None or provider.wakes(event, uids)


def wakes_channel(event: Event, uids: UidRange) -> bool:
    """Whether ``event`` should wake a channel that no room wants.

    Such a channel is looked at only for recorders of ours to stop (nothing is desired there,
    so nobody else's recorder is ours to stop, and who is in it changes nothing): only a
    recorder of ours waking it does anything. An app's NCS reports on every channel it has,
    most of them no room of ours: on the intake bench's 1,000 such channels, their joins,
    leaves and other tools' recordings woke ~800 passes a second, and the intake ran at a
    quarter of the bare endpoint."""
    provider = registry.find(event.source)
    return provider is None or provider.wakes_channel(event, uids)


def is_presence(event: Event) -> bool:
    """An event that tells only who is in a channel (joins, leaves, channel created or gone)."""
    provider = registry.find(event.source)
    return provider is not None and provider.is_presence(event)
