"""RTC channels: who is in them, in which role, and the productId 1 events they cause.

Counters are kept incrementally (users, hosts, publishers, excluding cloud recorders) so that a
join, a leave or an idle check costs O(1) however large the audience.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.emulators.framework.clock import Clock

from .events import EventSink

COMMUNICATION = "communication"
LIVE = "live"
HOST = "host"
AUDIENCE = "audience"

PLATFORM_LINUX = 6
CLIENT_TYPE_CLOUD_RECORDING = 10

# RTC event types (docs/providers/agora.md#10-rtc-channel-events).
CHANNEL_CREATE = 101
CHANNEL_DESTROY = 102
_JOIN = {(LIVE, HOST): 103, (LIVE, AUDIENCE): 105, (COMMUNICATION, HOST): 107}
_LEAVE = {(LIVE, HOST): 104, (LIVE, AUDIENCE): 106, (COMMUNICATION, HOST): 108}
ROLE_TO_BROADCASTER = 111
ROLE_TO_AUDIENCE = 112

LEAVE_QUIT = 1
LEAVE_TIMEOUT = 2


class ChannelError(Exception):
    """A control request that cannot happen in a real channel (e.g. a profile clash)."""


@dataclass(eq=False)
class Participant:
    uid: int
    profile: str
    role: str
    publish: bool
    platform: int
    joined_at: float
    recorder_sid: str | None = None

    @property
    def is_recorder(self) -> bool:
        return self.recorder_sid is not None


@dataclass(eq=False)
class _Audience:
    """The non-recorder members of one profile: who counts for idleness and who publishes."""

    users: set[int] = field(default_factory=set)
    hosts: set[int] = field(default_factory=set)
    publishers: set[int] = field(default_factory=set)


@dataclass(eq=False)
class Channel:
    """One channel name. Members of different profiles share it but cannot see each other."""

    name: str
    members: dict[int, Participant] = field(default_factory=dict)
    #: sids of the live tasks recording this channel name.
    tasks: set[str] = field(default_factory=set)
    client_seq: dict[int, int] = field(default_factory=dict)
    _views: dict[str, _Audience] = field(default_factory=dict)

    def idle_for(self, profile: str) -> bool:
        """Agora's idle rule: no users (communication) or no hosts (live); recorders ignored."""
        view = self._views.get(profile)
        if view is None:
            return True
        return not (view.users if profile == COMMUNICATION else view.hosts)

    def publishers(self, profile: str) -> set[int]:
        view = self._views.get(profile)
        return view.publishers if view is not None else set()

    def user_profile(self) -> str | None:
        """The profile of the real users present, if any (the default for new joiners)."""
        for profile, view in self._views.items():
            if view.users:
                return profile
        return None

    def count_in(self, p: Participant) -> None:
        if p.is_recorder:
            return
        view = self._views.setdefault(p.profile, _Audience())
        view.users.add(p.uid)
        if p.role == HOST:
            view.hosts.add(p.uid)
            if p.publish:
                view.publishers.add(p.uid)

    def count_out(self, p: Participant) -> None:
        view = self._views.get(p.profile)
        if view is not None:
            view.users.discard(p.uid)
            view.hosts.discard(p.uid)
            view.publishers.discard(p.uid)


def _event(table: dict[tuple[str, str], int], p: Participant) -> int:
    role = HOST if p.profile == COMMUNICATION else p.role
    return table[(p.profile, role)]


class ChannelRegistry:
    """Every channel the emulator has seen, and the RTC notifications of their changes."""

    def __init__(self, clock: Clock, events: EventSink) -> None:
        self._clock = clock
        self._events = events
        self.channels: dict[str, Channel] = {}

    def get(self, name: str) -> Channel:
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = Channel(name)
        return channel

    def join(self, channel: Channel, p: Participant) -> None:
        if p.uid in channel.members:
            raise ChannelError(f"uid {p.uid} is already in channel {channel.name!r}")
        first = not channel.members
        channel.members[p.uid] = p
        channel.count_in(p)
        if first:
            self._rtc(CHANNEL_CREATE, {"channelName": channel.name, "ts": self._ts()})
        self._rtc(_event(_JOIN, p), self._member_payload(channel, p))

    def leave(self, channel: Channel, uid: int, reason: int = LEAVE_QUIT) -> Participant:
        p = channel.members.pop(uid, None)
        if p is None:
            raise ChannelError(f"uid {uid} is not in channel {channel.name!r}")
        channel.count_out(p)
        payload = self._member_payload(channel, p)
        payload["reason"] = reason
        payload["duration"] = int(self._clock.now() - p.joined_at)
        self._rtc(_event(_LEAVE, p), payload)
        if not channel.members:
            destroy = {"channelName": channel.name, "ts": self._ts(), "lastUid": uid}
            self._rtc(CHANNEL_DESTROY, destroy)
        return p

    def set_role(self, channel: Channel, uid: int, role: str) -> None:
        p = channel.members.get(uid)
        if p is None:
            raise ChannelError(f"uid {uid} is not in channel {channel.name!r}")
        if p.profile != LIVE:
            raise ChannelError("roles exist only in the live profile")
        if p.role == role:
            return
        channel.count_out(p)
        p.role = role
        channel.count_in(p)
        event = ROLE_TO_BROADCASTER if role == HOST else ROLE_TO_AUDIENCE
        payload = {
            "channelName": channel.name,
            "uid": uid,
            "clientSeq": self._seq(channel, uid),
            "ts": self._ts(),
        }
        self._rtc(event, payload)

    def _member_payload(self, channel: Channel, p: Participant) -> dict[str, object]:
        payload: dict[str, object] = {"channelName": channel.name, "uid": p.uid}
        payload["platform"] = p.platform
        if p.platform == PLATFORM_LINUX:
            payload["clientType"] = CLIENT_TYPE_CLOUD_RECORDING if p.is_recorder else 3
        payload["clientSeq"] = self._seq(channel, p.uid)
        payload["ts"] = self._ts()
        return payload

    def _seq(self, channel: Channel, uid: int) -> int:
        """Per-user increasing ``clientSeq``, millisecond-based like Agora's."""
        seq = max(channel.client_seq.get(uid, 0) + 1, self._clock.now_ms())
        channel.client_seq[uid] = seq
        return seq

    def _ts(self) -> int:
        return int(self._clock.now())

    def _rtc(self, event_type: int, payload: dict[str, object]) -> None:
        self._events.rtc(event_type, payload)
