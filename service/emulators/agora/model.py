"""The state of emulated recording tasks: phases, playlists that grow, and read-only records.

A playlist accumulates recorded time only while its source is being recorded; its slice count,
the files it shows and the upload progress are computed from that on demand, so nothing ticks
per slice and every query is O(files).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from service.emulators.framework.clock import Timer

from .validation import StartSpec, Subscription

# serverResponse.status values (docs/providers/agora.md#3-query).
STATUS_IDLE = 0
STATUS_INITIALIZED = 1
STATUS_STARTING = 2
STATUS_PARTIAL_READY = 3
STATUS_READY = 4
STATUS_IN_PROGRESS = 5
STATUS_STOP_REQUESTED = 6
STATUS_STOPPED = 7
STATUS_EXITED = 8
STATUS_ABNORMAL_EXIT = 20

# recorder_leave leaveCode bits (docs/providers/agora.md#8-notifications-ncs).
LEAVE_INIT = 0
LEAVE_SIG = 2
LEAVE_NO_USERS = 4
LEAVE_CLIENT_LEAVE = 16


class Phase(enum.Enum):
    """Where a task is in its life; decides how each REST call is answered."""

    STARTING = "starting"  # status 0..3, recorder not yet in the channel
    RUNNING = "running"  # status 4/5
    FAILOVER = "failover"  # killed, being moved: REST calls answer 404
    EXITING = "exiting"  # stop or idle: stop answers 49, query 501
    EXITED = "exited"  # gone: 404 for ever

    @property
    def live(self) -> bool:
        return self is not Phase.EXITED


@dataclass(eq=False)
class Playlist:
    """One recorded stream (an M3U8 and its slices, plus MP4s when asked for)."""

    name: str
    stem: str
    uid: str
    track: str
    mixed: bool
    mp4: bool
    slice_seconds: float
    rollover_seconds: float
    recorded: float = 0.0
    active_since: float | None = None
    start_ms: int = 0
    stopped_ms: int = 0
    announced: bool = False
    first_slice: Timer | None = None

    def recorded_at(self, now: float) -> float:
        if self.active_since is None:
            return self.recorded
        return self.recorded + max(0.0, now - self.active_since)

    def slices(self, now: float, *, final: bool = False) -> int:
        seconds = self.recorded_at(now)
        complete = math.floor(seconds / self.slice_seconds + 1e-9)
        return (
            complete + 1 if final and seconds > complete * self.slice_seconds + 1e-9 else complete
        )

    def files(self, now: float, *, final: bool) -> list[str]:
        """File names visible at ``now``: the M3U8 once a slice is uploaded, then MP4s."""
        seconds = self.recorded_at(now)
        if self.slices(now, final=final) == 0:
            return []
        names = [self.name]
        if self.mp4:
            ratio = seconds / self.rollover_seconds
            count = math.ceil(ratio - 1e-9) if final else math.floor(ratio + 1e-9)
            names += [f"{self.stem}_{i}.mp4" for i in range(count)]
        return names


@dataclass(eq=False)
class Task:
    """One cloud recording task, identified by (app id, cname, uid) and by its ``sid``."""

    sid: str
    resource_id: str
    cname: str
    uid: str
    mode: str
    spec: StartSpec
    started_at: float
    resource_expires_at: float
    recorder_uid: int
    phase: Phase = Phase.STARTING
    status: int = STATUS_IDLE
    in_channel: bool = False
    failovers: int = 0
    ended_at: float | None = None
    #: When it stopped recording for good (stop, idle, max hour): it uploads and exits after.
    exiting_at: float | None = None
    exit_reason: str | None = None
    sequence: int = 0
    generation: int = 0
    playlists: dict[tuple[int, str, str], Playlist] = field(default_factory=dict)
    timers: dict[str, Timer] = field(default_factory=dict)
    audio: Subscription = field(default_factory=Subscription)
    video: Subscription = field(default_factory=Subscription)
    onhold: bool = False
    rtmp_outputs: tuple[str, ...] = ()
    layout: dict[str, Any] = field(default_factory=dict)
    token_error: int | None = None
    backuped: bool = False
    web_loaded: bool = False

    @property
    def profile(self) -> str:
        """The channel profile the recorder joins with (``channelType``)."""
        return "live" if self.spec.channel_type == 1 else "communication"

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence - 1

    def set_timer(self, name: str, timer: Timer | None) -> None:
        old = self.timers.pop(name, None)
        if old is not None:
            old.cancel()
        if timer is not None:
            self.timers[name] = timer

    def cancel_timers(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        for playlist in self.playlists.values():
            if playlist.first_slice is not None:
                playlist.first_slice.cancel()
                playlist.first_slice = None

    @property
    def prefix(self) -> str:
        """``bak<n>_`` after the n+1-th failover
        (docs/providers/agora.md#7-rate-limits-and-failover), else nothing."""
        return f"bak{self.generation - 1}_" if self.generation else ""

    def file_entries(self, now: float, *, final: bool = False) -> list[tuple[Playlist, str]]:
        return [(p, name) for p in self.playlists.values() for name in p.files(now, final=final)]

    def recorded_seconds(self, now: float) -> float:
        return sum(p.recorded_at(now) for p in self.playlists.values())

    def first_slice_ms(self) -> int:
        starts = [p.start_ms for p in self.playlists.values() if p.start_ms]
        return min(starts) if starts else 0

    def record(self, now: float) -> TaskRecord:
        files = [
            FileRecord(
                name=name,
                track=p.track,
                uid=p.uid,
                slices=p.slices(now, final=not self.phase.live),
                recorded_seconds=round(p.recorded_at(now), 3),
                start_ms=p.start_ms,
            )
            for p, name in self.file_entries(now, final=not self.phase.live)
        ]
        return TaskRecord(
            sid=self.sid,
            resource_id=self.resource_id,
            cname=self.cname,
            uid=self.uid,
            mode=self.mode,
            recorder_uid=self.recorder_uid,
            phase=self.phase.value,
            status=self.status,
            started_at=self.started_at,
            ended_at=self.ended_at,
            exiting_at=self.exiting_at,
            exit_reason=self.exit_reason,
            failovers=self.failovers,
            files=tuple(files),
        )


@dataclass(frozen=True)
class FileRecord:
    name: str
    track: str
    uid: str
    slices: int
    recorded_seconds: float
    start_ms: int


@dataclass(frozen=True)
class TaskRecord:
    """A snapshot of one task for tests and chaos checks (times are emulated epoch seconds)."""

    sid: str
    resource_id: str
    cname: str
    uid: str
    mode: str
    recorder_uid: int
    phase: str
    status: int
    started_at: float
    ended_at: float | None
    exiting_at: float | None
    exit_reason: str | None
    failovers: int
    files: tuple[FileRecord, ...]

    @property
    def live(self) -> bool:
        return self.ended_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "resource_id": self.resource_id,
            "cname": self.cname,
            "uid": self.uid,
            "mode": self.mode,
            "recorder_uid": self.recorder_uid,
            "phase": self.phase,
            "status": self.status,
            "live": self.live,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "exiting_at": self.exiting_at,
            "exit_reason": self.exit_reason,
            "failovers": self.failovers,
            "files": [
                {
                    "name": f.name,
                    "track": f.track,
                    "uid": f.uid,
                    "slices": f.slices,
                    "recorded_seconds": f.recorded_seconds,
                    "start_ms": f.start_ms,
                }
                for f in self.files
            ],
        }
