"""The provider port: the few calls the reconciler needs, whatever the recording service.

Every method returns a value or an :mod:`~reconcilers.outcomes` failure; none raises for a
provider error. ``reserve`` exists because Agora needs a resource before ``start`` and the
executor records that resource in an intent *before* starting, so that a crash between the two
leaves a record to find the session by (``docs/architecture.md#crash-safety``); providers without
such a step return an empty :class:`Reservation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from reconcilers.outcomes import Outcome

Mode = Literal["individual", "mix", "web"]
SessionState = Literal["starting", "recording", "stopping", "ended", "unknown"]


@dataclass(frozen=True)
class StorageTarget:
    """A storage profile as the adapters see it; each maps it onto its provider's format."""

    kind: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str
    endpoint: str | None = None
    prefix: tuple[str, ...] = ()


@dataclass(frozen=True)
class StartRequest:
    """Everything needed to start one segment of a room's recording."""

    room: str
    channel: str
    mode: Mode
    recorder_uid: str
    options: dict[str, Any]
    storage: StorageTarget
    file_prefix: tuple[str, ...] = ()
    #: The longest the segment may run, so that tokens outlive it.
    max_seconds: int = 24 * 3600


@dataclass(frozen=True)
class Reservation:
    """What the provider handed out before start (Agora's resource id), if anything."""

    resource_id: str | None = None
    expires_at_ms: int | None = None


@dataclass(frozen=True)
class SessionHandle:
    """Identifies a live provider session: enough to query, update and stop it."""

    provider: str
    channel: str
    recorder_uid: str
    mode: Mode
    sid: str
    resource_id: str | None = None
    #: Other resources the session may run under, when no start's answer named it (Agora:
    #: every start of its uid whose answer was lost or was an error that may have landed).
    resource_candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordedFile:
    """One file the provider reported, with its name relative to the bucket."""

    name: str
    track: str | None = None
    uid: str | None = None
    slice_start_ms: int | None = None
    playable: bool = True


@dataclass(frozen=True)
class SessionStatus:
    """A provider's answer to query, in neutral terms; ``raw_status`` is the provider's own.

    ``detail["exit_reason"]``, when a provider can tell, says why a session ended (``no_users``
    for an empty-channel auto-stop), so the plan waits for people instead of restarting even
    when the webhook that would have said so is lost.
    """

    state: SessionState
    raw_status: int | str | None = None
    files: tuple[RecordedFile, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StopResult:
    """What stop reported: the files and whether every one is already uploaded."""

    files: tuple[RecordedFile, ...] = ()
    upload_status: str | None = None


@dataclass(frozen=True)
class ChannelUsers:
    """Who is in a channel now, by the provider's own account: the users that keep a recorder
    busy (communication: everyone; live: the hosts). Recorders count too; the caller knows
    which uids are its own."""

    exists: bool
    users: tuple[str, ...] = ()


class InvalidOptions(ValueError):
    """Options a provider refuses: the dotted ``field`` (under the spec's ``options``) and
    why. A value, so the API names the field without reading it back out of a message."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Provider(Protocol):
    """One recording service: Agora, Cloudflare (and their emulators, which speak the same)."""

    name: str

    def validate_options(self, mode: Mode, options: dict[str, Any]) -> dict[str, Any]:
        """Check a spec's provider options; raise :class:`InvalidOptions` if bad."""
        ...

    async def reserve(self, request: StartRequest) -> Reservation | Outcome: ...

    async def start(
        self, request: StartRequest, reservation: Reservation
    ) -> SessionHandle | Outcome: ...

    async def query(self, handle: SessionHandle) -> SessionStatus | Outcome: ...

    async def update(self, handle: SessionHandle, options: dict[str, Any]) -> Outcome | None:
        """Apply what can change live (subscriptions, layout) without a restart."""
        ...

    async def stop(self, handle: SessionHandle) -> StopResult | Outcome: ...

    async def channel_users(self, channel: str) -> ChannelUsers | Outcome | None:
        """Ask the provider who is in ``channel``: the check behind "the channel is empty"
        when a join notification may have been lost. ``None``: this provider cannot tell."""
        ...

    async def aclose(self) -> None: ...
