"""Agora Cloud Recording's part in the domain: registered in
:mod:`reconcilers.providers.registry`."""

from __future__ import annotations

from reconcilers.providers.agora import folds, wakes
from reconcilers.providers.bundle import ProviderBundle

#: Option keys Agora applies live through ``update`` / ``updateLayout``.
LIVE_OPTION_KEYS = frozenset(
    {"streamSubscribe", "layout", "webRecordingConfig", "rtmpPublishConfig"}
)

BUNDLE = ProviderBundle(
    name=folds.PROVIDER,
    live_option_keys=LIVE_OPTION_KEYS,
    wakes=wakes.wakes,
    wakes_channel=wakes.wakes_channel,
    is_presence=wakes.is_presence,
    session_keys=folds.session_keys,
    fold_session=folds.fold_session,
    presence_keys=folds.presence_keys,
    fold_presence=folds.fold_presence,
    segment_keys=folds.segment_keys,
    fold_segment=folds.fold_segment,
)
