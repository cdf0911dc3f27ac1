"""Typed ``details`` of Agora notifications: what each event type says, as frozen values.

:func:`details_of` reads a parsed :class:`~.notifications.Notification` into one of the
:data:`Details` classes. It never raises: real payloads carry numbers as strings, missing or
extra fields, two spellings of ``fileName``; a field that cannot be read becomes ``None``, and
an event type this module does not model becomes :class:`OtherEvent`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconcilers.providers.agora._values import as_dict, as_int, as_list, as_str, recorded_files
from reconcilers.providers.base import RecordedFile

if TYPE_CHECKING:
    from reconcilers.providers.agora.notifications import Notification

_PRODUCT_RTC = 1
_PRODUCT_CLOUD_RECORDING = 3

# recorder_leave ``leaveCode`` bits (docs/providers/agora.md#8-notifications-ncs); 0 alone means
# initialisation failed.
LEAVE_SIG = 2
LEAVE_NO_USERS = 4
LEAVE_TIMER_CATCH = 8
LEAVE_CLIENT_LEAVE = 16


@dataclass(frozen=True)
class RecordingError:
    """Event 1. ``level`` 5 is fatal: the recording may have ended, so query at once."""

    module: int | None
    level: int | None
    code: int | None
    message: str

    @property
    def fatal(self) -> bool:
        return self.level == 5


@dataclass(frozen=True)
class RecordingWarning:
    """Event 2: uploader warnings (31 re-upload to your storage, 32 to Agora's backup)."""

    module: int | None
    code: int | None


@dataclass(frozen=True)
class StatusUpdate:
    """Event 3: the same status numbers as query (0..8, 20)."""

    status: int | None


@dataclass(frozen=True)
class FileInfos:
    """Event 4: the M3U8 playlist exists and was uploaded once."""

    playlist: str | None


@dataclass(frozen=True)
class SessionExit:
    """Event 11: the service exited; ``exit_status`` 0 is normal, anything else abnormal."""

    exit_status: int | None

    @property
    def abnormal(self) -> bool:
        return self.exit_status is not None and self.exit_status != 0


@dataclass(frozen=True)
class SessionFailover:
    """Event 12: the task moved to another server and rejoins with ``new_uid``."""

    new_uid: str | None


@dataclass(frozen=True)
class Uploaded:
    """Events 31 (all in your storage) and 32 (some in Agora's backup: files may come late)."""

    files: tuple[RecordedFile, ...]
    backuped: bool


@dataclass(frozen=True)
class UploadingProgress:
    """Event 33: uploaded / recorded * 10000; 10000 once all is uploaded."""

    progress: int | None


@dataclass(frozen=True)
class ComponentStarted:
    """Events 30 (``uploader``), 40 (``recorder``), 70 (``web_recorder``)."""

    component: str
    status: int | None


@dataclass(frozen=True)
class RecorderLeave:
    """Event 41. ``leave_code`` is a bitmask; 0 means init failed, -1 that it was missing."""

    leave_code: int

    def _bit(self, bit: int) -> bool:
        return self.leave_code > 0 and bool(self.leave_code & bit)

    @property
    def init_failed(self) -> bool:
        return self.leave_code == 0

    @property
    def signal(self) -> bool:
        return self._bit(LEAVE_SIG)

    @property
    def no_users(self) -> bool:
        return self._bit(LEAVE_NO_USERS)

    @property
    def client_leave(self) -> bool:
        return self._bit(LEAVE_CLIENT_LEAVE)


@dataclass(frozen=True)
class SliceStart:
    """Event 42: a slice started; ``discontinue_ms`` < ``start_ms`` after an interruption."""

    start_ms: int | None
    discontinue_ms: int | None


@dataclass(frozen=True)
class WebRecorderStopped:
    """Event 71: ``code`` 0 is a user stop; web-mode file names arrive here, not in 31."""

    code: int | None
    message: str
    files: tuple[RecordedFile, ...]


@dataclass(frozen=True)
class DownloadFailed:
    """Event 90: recorded files could not be downloaded."""

    files: tuple[str, ...]


@dataclass(frozen=True)
class ChannelLifecycle:
    """RTC events 101 (first user joined) and 102 (last user left)."""

    channel: str
    created: bool


@dataclass(frozen=True)
class ChannelMember:
    """RTC events 103-108. The cloud recorder itself shows as platform 6, clientType 10."""

    channel: str
    uid: str
    joined: bool
    role: str
    client_seq: int | None
    is_cloud_recorder: bool


@dataclass(frozen=True)
class RoleChange:
    """RTC events 111 (to broadcaster) and 112 (to audience)."""

    channel: str
    uid: str
    role: str
    client_seq: int | None


@dataclass(frozen=True)
class OtherEvent:
    """Any event this module does not model, unknown types included."""


Details = (
    RecordingError
    | RecordingWarning
    | StatusUpdate
    | FileInfos
    | SessionExit
    | SessionFailover
    | Uploaded
    | UploadingProgress
    | ComponentStarted
    | RecorderLeave
    | SliceStart
    | WebRecorderStopped
    | DownloadFailed
    | ChannelLifecycle
    | ChannelMember
    | RoleChange
    | OtherEvent
)

_COMPONENTS = {30: "uploader", 40: "recorder", 70: "web_recorder"}
_MEMBER_ROLES = {
    103: ("broadcaster", True),
    104: ("broadcaster", False),
    105: ("audience", True),
    106: ("audience", False),
    107: ("user", True),
    108: ("user", False),
}


def details_of(n: Notification) -> Details:
    """The typed meaning of a notification; :class:`OtherEvent` when unknown. Never raises."""
    payload = as_dict(n.payload)
    if n.product_id == _PRODUCT_CLOUD_RECORDING:
        return _recording(n.event_type, as_dict(payload.get("details")))
    if n.product_id == _PRODUCT_RTC:
        return _rtc(n.event_type, payload)
    return OtherEvent()


def _recording(event: int, d: dict[str, Any]) -> Details:
    if event == 1:
        return RecordingError(
            module=as_int(d.get("module")),
            level=as_int(d.get("errorLevel")),
            code=as_int(d.get("errorCode")),
            message=as_str(d.get("errorMsg")) or "",
        )
    if event == 2:
        return RecordingWarning(module=as_int(d.get("module")), code=as_int(d.get("warnCode")))
    if event == 3:
        return StatusUpdate(status=as_int(d.get("status")))
    if event == 4:
        return FileInfos(playlist=as_str(d.get("fileList")))
    if event == 11:
        return SessionExit(exit_status=as_int(d.get("exitStatus")))
    if event == 12:
        return SessionFailover(new_uid=as_str(d.get("newUid")))
    if event in (31, 32):
        backuped = event == 32 or as_str(d.get("uploadingStatus")) == "backuped"
        return Uploaded(files=recorded_files(d.get("fileList")), backuped=backuped)
    if event == 33:
        return UploadingProgress(progress=as_int(d.get("progress")))
    if event in _COMPONENTS:
        return ComponentStarted(component=_COMPONENTS[event], status=as_int(d.get("status")))
    if event == 41:
        code = as_int(d.get("leaveCode"))
        return RecorderLeave(leave_code=-1 if code is None else code)
    if event == 42:
        return SliceStart(
            start_ms=as_int(d.get("startUtcMs")), discontinue_ms=as_int(d.get("discontinueUtcMs"))
        )
    if event == 71:
        return WebRecorderStopped(
            code=as_int(d.get("code")),
            message=as_str(d.get("message")) or "",
            files=recorded_files(d.get("fileList")),
        )
    if event == 90:
        return DownloadFailed(files=_names(d.get("fileName")))
    return OtherEvent()


def _names(value: Any) -> tuple[str, ...]:
    """Event 90's ``fileName``: one string, ``;``-separated (or, leniently, a list)."""
    parts = value.split(";") if isinstance(value, str) else as_list(value)
    names = (as_str(p.strip() if isinstance(p, str) else p) for p in parts)
    return tuple(name for name in names if name)


def _rtc(event: int, p: dict[str, Any]) -> Details:
    channel = as_str(p.get("channelName")) or ""
    if event in (101, 102):
        return ChannelLifecycle(channel=channel, created=event == 101)
    uid = as_str(p.get("uid")) or ""
    seq = as_int(p.get("clientSeq"))
    if event in _MEMBER_ROLES:
        role, joined = _MEMBER_ROLES[event]
        recorder = as_int(p.get("platform")) == 6 and as_int(p.get("clientType")) == 10
        return ChannelMember(channel, uid, joined, role, seq, recorder)
    if event in (111, 112):
        role = "broadcaster" if event == 111 else "audience"
        return RoleChange(channel=channel, uid=uid, role=role, client_seq=seq)
    return OtherEvent()
