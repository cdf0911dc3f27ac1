"""Request and response bodies of the desired-state API (pydantic: validation and OpenAPI)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Matched whole (``fullmatch``; ``\Z``, not ``$``, which lets a trailing newline through:
# ``PUT /v1/rooms/r1%0A`` was a room, and a recorder started on channel ``"nlrec\n"``).
ROOM_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")
# Agora channel names: under 64 bytes of a-z, A-Z, 0-9, space and these
# (docs/providers/agora.md#1-acquire).
CHANNEL_NAME = re.compile(r"[A-Za-z0-9 !#$%&()+\-:;<=.>?@\[\]^_{}|~,]{1,63}\Z")


class RecordingSpecIn(BaseModel):
    """``PUT /v1/rooms/{room}/recording``: what the room should be doing."""

    model_config = ConfigDict(extra="forbid")

    state: Literal["recording", "stopped"] = "recording"
    provider: Literal["agora", "cloudflare"] = "agora"
    mode: Literal["individual", "mix", "web"] = "mix"
    channel: str | None = Field(default=None, description="Defaults to the room name.")
    storage: str = "default"
    options: dict[str, Any] = Field(default_factory=dict)
    recovery: Literal["standard", "aggressive"] = "standard"
    own_channel: bool = False
    max_segment_seconds: int = Field(default=12 * 3600, ge=600, le=30 * 24 * 3600)
    rollout: Literal["rollover", "restart"] = Field(
        default="rollover",
        description="How a change a running session cannot take live reaches it: "
        "'rollover' starts a new segment before stopping the old one (no gap), "
        "'restart' stops, then starts.",
    )

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not CHANNEL_NAME.fullmatch(value):
            raise ValueError(
                "channel names are 1-63 characters of a-z, A-Z, 0-9, space, punctuation"
            )
        return value

    @field_validator("options")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        for banned in ("token", "storageConfig"):
            if banned in value:
                raise ValueError(f"'{banned}' is set by the service, not by the spec")
        return value


class Condition(BaseModel):
    type: Literal["Recording", "Progressing", "Degraded"]
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition_time: str | None = None


class RoomView(BaseModel):
    room: str
    spec: dict[str, Any]
    generation: int
    #: The generation the running session was started or last updated with (Kubernetes'
    #: ``observedGeneration``); ``generation`` once the session runs the spec as declared.
    observed_generation: int | None = None
    observed: dict[str, Any]
    conditions: list[Condition]
    last_reconcile_at: str | None = None
    next_reconcile_at: str | None = None
