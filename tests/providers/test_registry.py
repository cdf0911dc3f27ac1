"""The provider registry: one place that names the providers, and a toy third provider that the
domain (projections, catalog, wake rules, spec) picks up from its bundle alone.

What a third provider still edits outside its package, and so this test cannot patch: the
``Source`` literal in ``reconcilers/events.py`` (the toy's events need a ``type: ignore``) and
the service's side (schemas, webhook routes, adapters, settings).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, get_args

import pytest

from reconcilers import hints
from reconcilers.events import Event, Fold, Row, Source
from reconcilers.folding import PRESENCE, channel_key
from reconcilers.identity import UidRange
from reconcilers.projections import PROJECTIONS
from reconcilers.providers import registry
from reconcilers.providers.bundle import ProviderBundle
from reconcilers.spec import RecordingSpec
from service.api.schemas import RecordingSpecIn

#: The sources that are no provider: our own API and reconciler, and the buckets' events.
NOT_PROVIDERS = {"api", "reconciler", "storage"}
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_the_event_sources_are_the_registered_providers_and_ours() -> None:
    assert set(get_args(Source)) == set(registry.names()) | NOT_PROVIDERS


def test_the_api_accepts_exactly_the_registered_providers() -> None:
    # pydantic's Literal gives the 422 that names the field; it must follow the registry
    accepted = get_args(RecordingSpecIn.model_fields["provider"].annotation)
    assert accepted == registry.names()
    assert RecordingSpecIn.model_fields["provider"].default == registry.DEFAULT_PROVIDER


def test_providers_are_registered_in_a_fixed_order_with_a_default() -> None:
    assert registry.names() == ("agora", "cloudflare")
    assert registry.DEFAULT_PROVIDER in registry.names()
    assert all(registry.bundle(name).name == name for name in registry.names())


def test_an_unknown_provider_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"'zoom'.*agora, cloudflare"):
        registry.bundle("zoom")
    assert registry.find("api") is None and registry.find("storage") is None


def test_agora_keeps_its_live_options_and_cloudflare_has_none() -> None:
    options = {"layout": {"mixedVideoLayout": 1}, "recordingConfig": {"maxIdleTime": 30}}
    agora = RecordingSpec(provider="agora", options=options)
    cloudflare = RecordingSpec(provider="cloudflare", options=options)
    assert agora.live_options() == {"layout": {"mixedVideoLayout": 1}}
    assert cloudflare.live_options() == {} and cloudflare.restart_options() == options


# A toy provider: a session per ``toy.status`` event, a channel present while it is "live".


def _session_keys(event: Event) -> Sequence[str]:
    return [f"toy:{event.session}"] if event.type == "toy.status" and event.session else []


def _fold_session(data: dict[str, Any], event: Event, at: int) -> None:
    data.setdefault("provider", "toy")
    data.setdefault("sid", event.session)
    data["channel"] = event.room
    data["state"] = event.payload["state"]


def _presence_keys(event: Event) -> Sequence[str]:
    return [channel_key("toy", event.room or "")] if event.type == "toy.channel" else []


def _fold_presence(row: Row | None, event: Event) -> Row | None:
    key = channel_key("toy", event.room or "")
    users = {"someone": {"present": event.payload["live"]}}
    return Row(PRESENCE, key, key, {"users": users, "known": True}, event.seq)


def _fold_segment(data: dict[str, Any], event: Event, at: int) -> None:
    data.setdefault("provider", "toy")
    data.setdefault("sid", event.session)
    data["channel"] = event.room
    if event.payload["state"] == "ended":
        data["ended_ms"] = at


TOY = ProviderBundle(
    name="toy",
    live_option_keys=frozenset({"volume"}),
    wakes=lambda event, uids: event.type != "toy.progress",
    session_keys=_session_keys,
    fold_session=_fold_session,
    presence_keys=_presence_keys,
    fold_presence=_fold_presence,
    segment_keys=_session_keys,
    fold_segment=_fold_segment,
)


def toy(seq: int, type_: str, payload: dict[str, Any], session: str | None = None) -> Event:
    return Event(seq, "toy", f"t{seq}", type_, payload, "ch", session, T0)  # type: ignore[arg-type]


@pytest.fixture
def with_toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUNDLES, "toy", TOY)


@pytest.mark.usefixtures("with_toy")
def test_a_toy_bundle_is_folded_by_the_projections_and_the_catalog() -> None:
    fold = Fold(PROJECTIONS)
    fold.apply(toy(1, "toy.status", {"state": "recording"}, session="s1"))
    fold.apply(toy(2, "toy.channel", {"live": True}))
    fold.apply(toy(3, "toy.status", {"state": "ended"}, session="s1"))

    session = fold.rows[("sessions", "toy:s1")]
    assert session.data["state"] == "ended" and session.room == "toy/ch#closed"
    presence = fold.rows[("presence", "toy/ch")]
    assert presence.data["users"] == {"someone": {"present": True}}
    segment = fold.rows[("recording_segments", "toy:s1")]
    assert segment.room == "toy/ch" and segment.data["ended_ms"] == int(T0.timestamp() * 1000)


@pytest.mark.usefixtures("with_toy")
def test_a_toy_bundle_decides_its_wakes_and_live_options() -> None:
    uids = UidRange()
    assert not hints.wakes(toy(1, "toy.progress", {}), uids)
    assert hints.wakes(toy(2, "toy.status", {"state": "ended"}), uids)
    assert hints.wakes_channel(toy(3, "toy.progress", {}), uids)  # the default: always
    assert not hints.is_presence(toy(4, "toy.channel", {"live": True}))
    spec = RecordingSpec(provider="toy", options={"volume": 3, "codec": "vp9"})
    assert spec.live_options() == {"volume": 3}
    assert spec.restart_options() == {"codec": "vp9"}
