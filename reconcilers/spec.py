"""The desired state of one room's recording, as a user declares it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from reconcilers.providers import registry

DesiredState = Literal["recording", "stopped"]
Recovery = Literal["standard", "aggressive"]
Rollout = Literal["rollover", "restart"]


@dataclass(frozen=True)
class RecordingSpec:
    """What a user wants for a room. ``options`` are the provider's own start options.

    ``recovery="aggressive"`` follows Agora's advice for critical recordings: on a 404 start a
    replacement at once with the spare uid instead of waiting out the failover window.
    ``own_channel`` lets the service stop recorders in the channel that it did not start.
    ``rollout`` says how a change that a running session cannot take live reaches it:
    ``rollover`` (make-before-break: a new segment starts with the spare uid, the old one
    stops once the new one records) or ``restart`` (stop, then start).
    """

    state: DesiredState = "recording"
    provider: str = registry.DEFAULT_PROVIDER
    mode: Literal["individual", "mix", "web"] = "mix"
    channel: str = ""
    storage: str = "default"
    options: dict[str, Any] = field(default_factory=dict)
    recovery: Recovery = "standard"
    own_channel: bool = False
    max_segment_seconds: int = 12 * 3600
    rollout: Rollout = "rollover"

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "provider": self.provider,
            "mode": self.mode,
            "channel": self.channel,
            "storage": self.storage,
            "options": self.options,
            "recovery": self.recovery,
            "own_channel": self.own_channel,
            "max_segment_seconds": self.max_segment_seconds,
            "rollout": self.rollout,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordingSpec:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def live_options(self) -> dict[str, Any]:
        """The options its provider can change without a restart (Agora: subscriptions,
        layout): the provider's bundle names them."""
        live = registry.bundle(self.provider).live_option_keys
        return {k: v for k, v in self.options.items() if k in live}

    def restart_options(self) -> dict[str, Any]:
        """Everything else: a change here needs a new segment."""
        live = registry.bundle(self.provider).live_option_keys
        return {k: v for k, v in self.options.items() if k not in live}

    def restart_fingerprint(self) -> str:
        """A stable digest of the options only a new segment can apply."""
        return fingerprint(self.restart_options())


def fingerprint(options: dict[str, Any]) -> str:
    """A stable digest of options (keys sorted), to tell whether a session runs them."""
    text = json.dumps(options, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
