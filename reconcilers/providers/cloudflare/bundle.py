"""Cloudflare RealtimeKit's part in the domain: registered in
:mod:`reconcilers.providers.registry`.

No option of a RealtimeKit recording changes live (its adapter's ``update`` does nothing), and
every webhook wakes its pass (the defaults).
"""

from __future__ import annotations

from reconcilers.providers.bundle import ProviderBundle
from reconcilers.providers.cloudflare import folds

BUNDLE = ProviderBundle(
    name=folds.PROVIDER,
    session_keys=folds.session_keys,
    fold_session=folds.fold_session,
    presence_keys=folds.presence_keys,
    fold_presence=folds.apply_presence,
    segment_keys=folds.segment_keys,
    fold_segment=folds.fold_segment,
)
