"""A provider as one bundle: everything the pure domain needs to know of it, in one value.

The projections, the wake rules, the catalog and the spec look a provider up by name (an
event's ``source`` is its provider's name) in :mod:`reconcilers.providers.registry` and call
its hooks instead of branching on ``"agora"`` or ``"cloudflare"``. What a provider does not
have, its bundle leaves at the default: every event wakes, nothing is presence, no rows.
The service's side of a provider (its adapter, webhook intake and settings) is not here yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reconcilers.events import Event, Row
from reconcilers.identity import UidRange

#: Whether an event (of this provider) should wake a pass now; see :mod:`reconcilers.hints`.
WakeRule = Callable[[Event, UidRange], bool]
#: The keys of the rows of one projection that an event of this provider touches.
KeysOf = Callable[[Event], Sequence[str]]
#: Folds an event into a row's ``data`` in place, at ``at`` ms (see ``folding.event_ms``).
FoldInto = Callable[[dict[str, Any], Event, int], None]
#: Folds an event into a row: the new row, the old one to keep it, ``None`` to leave it absent.
RowFold = Callable[[Row | None, Event], Row | None]


def _always(event: Event, uids: UidRange) -> bool:
    return True


def _never(event: Event) -> bool:
    return False


def _no_keys(event: Event) -> Sequence[str]:
    return ()


def _no_fold(data: dict[str, Any], event: Event, at: int) -> None:
    return None


def _keep_row(row: Row | None, event: Event) -> Row | None:
    return row


@dataclass(frozen=True)
class ProviderBundle:
    """One provider's part in the domain.

    ``name`` is the provider's name in specs and row keys and the ``source`` of its events.
    ``live_option_keys`` are the start options a running session takes live (``update``);
    any other option's change needs a new segment. ``sessions``: ``session_keys`` and
    ``fold_session`` fill a ``sessions`` row's ``data`` (it must set ``sid``, else the row is
    left as it was); the projection adds what every provider shares. ``presence``: a provider
    folds its channel events into its own ``presence`` rows. ``recording_segments``: the
    catalog's files and ends of a session.
    """

    name: str
    live_option_keys: frozenset[str] = frozenset()
    wakes: WakeRule = _always
    wakes_channel: WakeRule = _always
    is_presence: Callable[[Event], bool] = _never
    session_keys: KeysOf = _no_keys
    fold_session: FoldInto = _no_fold
    presence_keys: KeysOf = _no_keys
    fold_presence: RowFold = _keep_row
    segment_keys: KeysOf = _no_keys
    fold_segment: FoldInto = _no_fold
