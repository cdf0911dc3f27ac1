"""The life of a recording task, driven by timers on the emulated clock.

start → status 0..3 over ``startup_seconds`` → the recorder joins the channel (status 4) →
playlists record while someone it subscribes to publishes (status 5 after the first slice) →
it leaves when stopped, when the channel stays idle for ``maxIdleTime``, or (web) after
``maxRecordingHour`` → uploads → exits. A kill moves the task elsewhere within the failover
window (404 meanwhile, ``bak<n>_`` files after) or ends it for good. Every step sends the
notifications Agora documents for it (docs/providers/agora.md §7, §8, §10).
"""

from __future__ import annotations

from service.emulators.framework.clock import Clock
from service.emulators.framework.control import ControlError

from .channels import (
    AUDIENCE,
    COMMUNICATION,
    HOST,
    LEAVE_QUIT,
    LEAVE_TIMEOUT,
    LIVE,
    PLATFORM_LINUX,
    Channel,
    ChannelError,
    ChannelRegistry,
    Participant,
)
from .config import EmulatorConfig
from .events import EventSink
from .faults import FaultInjector
from .ids import IdSource
from .model import (
    LEAVE_CLIENT_LEAVE,
    LEAVE_INIT,
    LEAVE_NO_USERS,
    STATUS_ABNORMAL_EXIT,
    STATUS_EXITED,
    STATUS_IN_PROGRESS,
    STATUS_PARTIAL_READY,
    STATUS_READY,
    STATUS_STOP_REQUESTED,
    STATUS_STOPPED,
    Phase,
    Task,
)
from .recording import StreamRecorder
from .responses import file_entry
from .validation import StartSpec, UpdateRequest

_WEB_STOP_CODES = {"stopped": (0, "ok"), "max_recording_hour": (1, "max_recording_hour")}
_TOKEN_ERRORS = {109: "token_expired", 110: "token_invalid"}


class RecordingEngine:
    """Owns every task and channel; all mutation happens here, on the event loop thread."""

    def __init__(
        self,
        config: EmulatorConfig,
        clock: Clock,
        ids: IdSource,
        faults: FaultInjector,
        events: EventSink,
        channels: ChannelRegistry,
    ) -> None:
        self.config = config
        self.clock = clock
        self.ids = ids
        self.faults = faults
        self.events = events
        self.channels = channels
        self.tasks: dict[str, Task] = {}
        self.by_identity: dict[tuple[str, str], Task] = {}
        self.by_resource: dict[str, Task] = {}
        self.live = 0
        self._pending_uid: dict[str, int] = {}
        self.recorder = StreamRecorder(config, clock, events, channels, self._idle)

    # ---- creation and startup -------------------------------------------------------------

    def create(self, resource_id: str, cname: str, uid: str, spec: StartSpec, hours: int) -> Task:
        """Register a started task (the REST layer has checked every precondition)."""
        now = self.clock.now()
        task = Task(
            sid=self.ids.sid(),
            resource_id=resource_id,
            cname=cname,
            uid=uid,
            mode=spec.mode,
            spec=spec,
            started_at=now,
            resource_expires_at=now + hours * 3600,
            recorder_uid=int(uid),
            audio=spec.audio,
            video=spec.video,
            onhold=spec.web.onhold if spec.web else False,
            rtmp_outputs=spec.web.rtmp_outputs if spec.web else (),
        )
        self.tasks[task.sid] = task
        self.by_identity[(cname, uid)] = task
        self.by_resource[resource_id] = task
        self.live += 1
        self.channels.get(cname).tasks.add(task.sid)
        if spec.web is None:
            if self.config.app_certificate and not spec.token:
                task.token_error = 110
            else:
                task.token_error = self.faults.token_error()
        else:
            deadline = now + spec.web.max_recording_hour * 3600
            task.set_timer("max_hour", self.clock.call_at(deadline, lambda: self._max_hour(task)))
        task.backuped = self.faults.backuped()
        self._next_step(task)
        self._schedule_kill(task)
        return task

    def _next_step(self, task: Task) -> None:
        delay = self.config.startup_seconds / 4
        task.set_timer("phase", self.clock.call_later(delay, lambda: self._step(task)))

    def _step(self, task: Task) -> None:
        if task.phase is not Phase.STARTING:
            return
        if task.status + 1 < STATUS_READY:
            task.status += 1
            self.events.status(task)
            if task.status == STATUS_PARTIAL_READY:
                self.events.recording(task, 30, status=0)
            self._next_step(task)
        elif task.mode == "web":
            self._become_ready(task)
            task.web_loaded = True
            self.events.recording(task, 70, recorderStartTime=self.clock.now_ms())
            self.recorder.refresh(task)
        else:
            self._join(task)

    def _join(self, task: Task) -> None:
        channel = self.channels.get(task.cname)
        if task.token_error is not None:
            code = task.token_error
            self._fail(task, _TOKEN_ERRORS[code], code, "invalid or expired token", LEAVE_INIT)
            return
        if task.recorder_uid in channel.members:
            self._fail(task, "uid_conflict", 0, "uid conflicts with a user", LEAVE_INIT)
            return
        recorder = Participant(
            uid=task.recorder_uid,
            profile=task.profile,
            role=AUDIENCE if task.profile == LIVE else HOST,
            publish=False,
            platform=PLATFORM_LINUX,
            joined_at=self.clock.now(),
            recorder_sid=task.sid,
        )
        self.channels.join(channel, recorder)
        task.in_channel = True
        self._become_ready(task)
        self.events.recording(task, 40, status=0)
        self.recorder.refresh(task)

    def _become_ready(self, task: Task) -> None:
        task.phase = Phase.RUNNING
        task.status = STATUS_IN_PROGRESS if task.file_entries(self.clock.now()) else STATUS_READY
        self.events.status(task)
        if self.events.recording_enabled and self.config.progress_interval > 0:
            self._schedule_progress(task)

    # ---- recording activity ---------------------------------------------------------------

    def refresh_channel(self, channel: Channel) -> None:
        """Re-evaluate every task on ``channel`` after its membership changed."""
        for sid in list(channel.tasks):
            self.recorder.refresh(self.tasks[sid])

    def _schedule_progress(self, task: Task) -> None:
        def tick() -> None:
            if task.phase is Phase.RUNNING:
                self.events.recording(task, 33, progress=self.recorder.progress(task))
                self._schedule_progress(task)

        task.set_timer("progress", self.clock.call_later(self.config.progress_interval, tick))

    def update(self, task: Task, change: UpdateRequest) -> None:
        """Apply an update call: subscription lists, web onhold, CDN outputs."""
        if change.audio is not None:
            task.audio = change.audio
        if change.video is not None:
            task.video = change.video
        if change.onhold is not None:
            task.onhold = change.onhold
        if change.rtmp_outputs is not None:
            task.rtmp_outputs = change.rtmp_outputs
        self.recorder.refresh(task)

    # ---- ending ---------------------------------------------------------------------------

    def stop(self, task: Task) -> None:
        """A client stop: the recorder leaves (leaveCode 16) and the task uploads and exits."""
        self._begin_exit(task, "stopped", LEAVE_CLIENT_LEAVE)

    def _idle(self, task: Task) -> None:
        task.timers.pop("idle", None)
        if task.phase is Phase.RUNNING:
            self._begin_exit(task, "idle", LEAVE_NO_USERS)

    def _max_hour(self, task: Task) -> None:
        task.timers.pop("max_hour", None)
        if task.phase in (Phase.STARTING, Phase.RUNNING, Phase.FAILOVER):
            self._begin_exit(task, "max_recording_hour", LEAVE_CLIENT_LEAVE)

    def _begin_exit(self, task: Task, reason: str, leave_code: int) -> None:
        task.cancel_timers()
        self.recorder.pause_all(task)
        if task.in_channel:
            self.events.recording(task, 41, leaveCode=leave_code)
            self._leave_channel(task, LEAVE_QUIT)
        task.phase = Phase.EXITING
        task.exiting_at = self.clock.now()
        task.exit_reason = reason
        task.status = STATUS_STOP_REQUESTED
        self.events.status(task)
        half = self.config.exit_seconds / 2

        def stopped() -> None:
            task.status = STATUS_STOPPED
            self.events.status(task)
            task.set_timer("phase", self.clock.call_later(half, lambda: self._exit(task)))

        task.set_timer("phase", self.clock.call_later(half, stopped))

    def _exit(self, task: Task) -> None:
        now = self.clock.now()
        entries = task.file_entries(now, final=True)
        if task.spec.web is not None:
            code, message = _WEB_STOP_CODES.get(task.exit_reason or "", (6, "recorder_error"))
            hours = task.spec.web.max_recording_hour
            details = f"max recording hour is {hours}" if code == 1 else ""
            files = [{"filename": n, "sliceStartTime": p.start_ms} for p, n in entries]
            self.events.recording(
                task, 71, code=code, message=message, details=details, fileList=files
            )
        if entries:
            event = 32 if task.backuped else 31
            if task.mode == "web":
                self.events.recording(task, event, status=0)
            else:
                files = [file_entry(p, n) for p, n in entries]
                self.events.recording(task, event, status=0, fileList=files)
        task.status = STATUS_EXITED
        self.events.status(task)
        self.events.recording(task, 11, exitStatus=0)
        self._finish(task, task.exit_reason or "stopped", STATUS_EXITED)

    def _fail(self, task: Task, reason: str, code: int, message: str, leave: int | None) -> None:
        """An abnormal end: fatal error, (recorder_leave), session_exit 1, 404 from now on."""
        self._error_event(task, code, message)
        if leave is not None:
            self.events.recording(task, 41, leaveCode=leave)
        self.events.recording(task, 11, exitStatus=1)
        self._finish(task, reason, STATUS_ABNORMAL_EXIT)

    def _error_event(self, task: Task, code: int, message: str) -> None:
        """Event 1 at errorLevel 5 (fatal): the documented hint to call query."""
        self.events.recording(
            task, 1, module=0, errorLevel=5, errorCode=code, stat=0, errorMsg=message
        )

    def _finish(self, task: Task, reason: str, status: int) -> None:
        task.cancel_timers()
        self.recorder.pause_all(task)
        if task.in_channel:
            self._leave_channel(task, LEAVE_TIMEOUT if status == STATUS_ABNORMAL_EXIT else 1)
        task.phase = Phase.EXITED
        task.status = status
        task.exit_reason = reason
        task.ended_at = self.clock.now()
        self.live -= 1
        self._pending_uid.pop(task.sid, None)
        if self.by_identity.get((task.cname, task.uid)) is task:
            del self.by_identity[(task.cname, task.uid)]
        self.channels.get(task.cname).tasks.discard(task.sid)

    def _leave_channel(self, task: Task, reason: int) -> None:
        channel = self.channels.get(task.cname)
        member = channel.members.get(task.recorder_uid)
        task.in_channel = False
        if member is not None and member.recorder_sid == task.sid:
            self.channels.leave(channel, task.recorder_uid, reason)
            self.refresh_channel(channel)

    # ---- failures: kill and failover ------------------------------------------------------

    def _schedule_kill(self, task: Task) -> None:
        delay = self.faults.kill_after()
        if delay is not None:
            timer = self.clock.call_later(
                delay, lambda: self.kill(task, failover=self.faults.kill_fails_over())
            )
            task.set_timer("kill", timer)

    def kill(self, task: Task, *, failover: bool, window: float | None = None) -> None:
        """Kill the recorder process: fail over within ``window`` or, if not, die for good."""
        if task.phase in (Phase.EXITING, Phase.EXITED):
            raise ControlError(409, f"task {task.sid} is {task.phase.value}")
        if task.phase is Phase.FAILOVER and failover:
            raise ControlError(409, f"task {task.sid} is already failing over")
        exhausted = task.failovers >= self.config.max_failovers
        if not failover or exhausted:
            reason = "failover_exhausted" if failover else "killed"
            self._fail(task, reason, 0, "recorder process exited unexpectedly", None)
            return
        self._error_event(task, 0, "recorder process exited unexpectedly")
        task.cancel_timers()
        self.recorder.pause_all(task)
        if task.in_channel:
            self._leave_channel(task, LEAVE_TIMEOUT)
        new_uid = self.ids.recorder_uid()
        self._pending_uid[task.sid] = new_uid
        task.phase = Phase.FAILOVER
        self.events.recording(task, 12, newUid=new_uid)
        delay = self.config.failover_seconds if window is None else window
        task.set_timer("phase", self.clock.call_later(delay, lambda: self._restart(task)))
        if task.spec.web is not None:
            deadline = task.started_at + task.spec.web.max_recording_hour * 3600
            task.set_timer("max_hour", self.clock.call_at(deadline, lambda: self._max_hour(task)))

    def _restart(self, task: Task) -> None:
        task.timers.pop("phase", None)
        task.failovers += 1
        task.generation = task.failovers
        task.recorder_uid = self._pending_uid.pop(task.sid)
        self._schedule_kill(task)
        self.events.recording(task, 30, status=0)
        if task.mode == "web":
            self._become_ready(task)
            self.recorder.refresh(task)
        else:
            self._join(task)

    # ---- channel membership (control API) ---------------------------------------------------

    def join_user(
        self,
        cname: str,
        uid: int,
        *,
        role: str | None = None,
        profile: str | None = None,
        publish: bool | None = None,
        platform: int = 7,
    ) -> Participant:
        channel = self.channels.get(cname)
        chosen = profile or channel.user_profile()
        if chosen is None:
            chosen = LIVE if role is not None else self.config.default_profile
        role = HOST if chosen == COMMUNICATION else (role or HOST)
        if chosen not in (LIVE, COMMUNICATION) or role not in (HOST, AUDIENCE):
            raise ControlError(400, "profile must be live/communication, role host/audience")
        existing = channel.members.get(uid)
        if existing is not None and existing.recorder_sid is not None:
            kicked = self.tasks[existing.recorder_sid]
            self._fail(kicked, "uid_conflict", 0, "kicked: a user joined with the same uid", 0)
        person = Participant(
            uid=uid,
            profile=chosen,
            role=role,
            publish=role == HOST if publish is None else publish and role == HOST,
            platform=platform,
            joined_at=self.clock.now(),
        )
        try:
            self.channels.join(channel, person)
        except ChannelError as exc:
            raise ControlError(409, str(exc)) from None
        self.refresh_channel(channel)
        return person

    def leave_user(self, cname: str, uid: int, reason: int = LEAVE_QUIT) -> None:
        channel = self.channels.get(cname)
        member = channel.members.get(uid)
        if member is None or member.is_recorder:
            raise ControlError(404, f"uid {uid} is not a user in channel {cname!r}")
        self.channels.leave(channel, uid, reason)
        self.refresh_channel(channel)

    def set_role(self, cname: str, uid: int, role: str) -> None:
        if role not in (HOST, AUDIENCE):
            raise ControlError(400, "role must be host or audience")
        channel = self.channels.get(cname)
        member = channel.members.get(uid)
        if member is None or member.is_recorder:
            raise ControlError(404, f"uid {uid} is not a user in channel {cname!r}")
        try:
            self.channels.set_role(channel, uid, role)
        except ChannelError as exc:
            raise ControlError(409, str(exc)) from None
        self.refresh_channel(channel)
