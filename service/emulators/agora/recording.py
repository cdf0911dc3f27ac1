"""What a running task records at each moment: playlists switched on and off, idle detection.

Called whenever something that matters changes (a user joins, leaves or changes role, the
recorder joins or leaves, a subscription or ``onhold`` is updated), never on a tick: playlists
keep their own recorded time, and the only timers are "first slice done" and "idle for
maxIdleTime".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from service.emulators.framework.clock import Clock

from .channels import ChannelRegistry
from .config import EmulatorConfig
from .events import EventSink
from .model import STATUS_IN_PROGRESS, STATUS_READY, Phase, Playlist, Task

_MIX_TRACK = {0: "audio", 1: "video", 2: "audio_and_video"}
_SINGLE_TRACKS = {0: ("audio",), 1: ("video",), 2: ("audio", "video")}


class StreamRecorder:
    """Keeps each task's playlists in step with the channel and the task's settings."""

    def __init__(
        self,
        config: EmulatorConfig,
        clock: Clock,
        events: EventSink,
        channels: ChannelRegistry,
        on_idle: Callable[[Task], None],
    ) -> None:
        self._config = config
        self._clock = clock
        self._events = events
        self._channels = channels
        self._on_idle = on_idle

    def refresh(self, task: Task) -> None:
        """Record exactly the wanted streams, and (re)arm or cancel the idle timer."""
        now = self._clock.now()
        wanted = {(task.generation, uid, track) for uid, track in self._wanted(task)}
        for key, playlist in task.playlists.items():
            if playlist.active_since is not None and key not in wanted:
                self._deactivate(playlist, now)
        for key in wanted:
            self._activate(task, key, now)
        if not (task.in_channel and task.phase is Phase.RUNNING):
            return
        if self._channels.get(task.cname).idle_for(task.profile):
            if "idle" not in task.timers:
                timer = self._clock.call_later(task.spec.max_idle_time, lambda: self._on_idle(task))
                task.set_timer("idle", timer)
        else:
            task.set_timer("idle", None)

    def pause_all(self, task: Task) -> None:
        """Stop every playlist (the recorder left, was killed, or the task is ending)."""
        now = self._clock.now()
        for playlist in task.playlists.values():
            if playlist.active_since is not None:
                self._deactivate(playlist, now)

    def progress(self, task: Task) -> int:
        """Uploaded / recorded * 10000; whole slices are uploaded as soon as they complete."""
        if task.phase is Phase.EXITED:
            return 10000
        now = self._clock.now()
        recorded = task.recorded_seconds(now)
        if recorded <= 0:
            return 0
        uploaded = sum(p.slices(now) * p.slice_seconds for p in task.playlists.values())
        return min(10000, int(10000 * min(uploaded, recorded) / recorded))

    def _wanted(self, task: Task) -> Iterator[tuple[str, str]]:
        """(stream uid, track) pairs that should be recording right now."""
        if task.phase is not Phase.RUNNING:
            return
        if task.mode == "web":
            if not task.onhold:
                yield "0", "audio_and_video"
            return
        if not task.in_channel:
            return
        publishers = self._channels.get(task.cname).publishers(task.profile)
        kinds = task.spec.stream_types
        if task.mode == "mix":
            for uid in publishers:
                key = str(uid)
                audio = kinds != 1 and task.audio.allows(key)
                if audio or (kinds != 0 and task.video.allows(key)):
                    yield "0", _MIX_TRACK[kinds]
                    return
            return
        for uid in publishers:
            key = str(uid)
            for track in _SINGLE_TRACKS[kinds]:
                if (task.audio if track == "audio" else task.video).allows(key):
                    yield key, track

    def _activate(self, task: Task, key: tuple[int, str, str], now: float) -> None:
        playlist = task.playlists.get(key)
        if playlist is None:
            playlist = task.playlists[key] = self._new_playlist(task, key[1], key[2])
        if playlist.active_since is not None:
            return
        now_ms = self._clock.now_ms()
        playlist.active_since = now
        if not playlist.start_ms:
            playlist.start_ms = now_ms
        if task.mode != "web":
            self._events.recording(
                task,
                42,
                startUtcMs=now_ms,
                discontinueUtcMs=playlist.stopped_ms or now_ms,
                mixedAllUser=playlist.mixed,
                streamUid=playlist.uid,
                trackType=playlist.track,
            )
        if not playlist.announced:
            remaining = playlist.slice_seconds - playlist.recorded
            timer = self._clock.call_later(remaining, lambda: self._first_slice(task, playlist))
            playlist.first_slice = timer

    def _deactivate(self, playlist: Playlist, now: float) -> None:
        playlist.recorded = playlist.recorded_at(now)
        playlist.active_since = None
        playlist.stopped_ms = self._clock.now_ms()
        if playlist.first_slice is not None:
            playlist.first_slice.cancel()
            playlist.first_slice = None

    def _new_playlist(self, task: Task, uid: str, track: str) -> Playlist:
        """File names as Agora builds them (docs/providers/agora.md#3-query), ``bak<n>_`` after a
        failover."""
        base = f"{task.prefix}{task.sid}_{task.cname}"
        if task.mode == "individual":
            base += f"__uid_s_{uid}__uid_e_{track}"
        path = "".join(f"{p}/" for p in task.spec.file_prefix)
        if task.spec.web is not None:
            rollover = task.spec.web.max_video_duration_min * 60.0
        else:
            rollover = self._config.mp4_rollover_seconds
        return Playlist(
            name=f"{path}{base}.m3u8",
            stem=f"{path}{base}",
            uid=uid,
            track=track,
            mixed=task.mode != "individual",
            mp4="mp4" in task.spec.av_file_types,
            slice_seconds=self._config.slice_seconds,
            rollover_seconds=rollover,
        )

    def _first_slice(self, task: Task, playlist: Playlist) -> None:
        """The first slice is uploaded: event 4, and status 5 for the task."""
        playlist.first_slice = None
        playlist.announced = True
        self._events.recording(task, 4, fileList=playlist.name)
        if task.phase is Phase.RUNNING and task.status == STATUS_READY:
            task.status = STATUS_IN_PROGRESS
            self._events.status(task, file_list=playlist.name)
