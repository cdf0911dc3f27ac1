"""The one place the domain's providers are registered, in a fixed order.

Everything provider-specific in the domain is reached from here: an event's ``source`` names
its provider's bundle. A new provider is a package with a ``bundle.py`` and one line below.
"""

from __future__ import annotations

from reconcilers.providers.agora.bundle import BUNDLE as AGORA
from reconcilers.providers.bundle import ProviderBundle
from reconcilers.providers.cloudflare.bundle import BUNDLE as CLOUDFLARE

#: The provider of a spec, a session or a recording that does not name one (older rows).
DEFAULT_PROVIDER = "agora"

BUNDLES: dict[str, ProviderBundle] = {b.name: b for b in (AGORA, CLOUDFLARE)}


def names() -> tuple[str, ...]:
    """The registered providers' names, in registration order."""
    return tuple(BUNDLES)


def bundle(name: str) -> ProviderBundle:
    """The bundle of provider ``name``; a ``KeyError`` that names the known ones if none."""
    try:
        return BUNDLES[name]
    except KeyError:
        known = ", ".join(names())
        raise KeyError(
            f"no provider {name!r} is registered (known: {known}; "
            "see reconcilers/providers/registry.py)"
        ) from None


def find(source: str) -> ProviderBundle | None:
    """The bundle of the provider an event came from, ``None`` for our own sources
    (``api``, ``reconciler``) and for ``storage``."""
    return BUNDLES.get(source)
