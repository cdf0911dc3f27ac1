"""Agora notification (NCS) payloads: the envelope, the event types, and their typed details.

The intake stores every notification as received; this module tells what one means, and
:func:`details_of` (from :mod:`.details`) reads its ``details`` into typed values. Real payloads
differ from the documentation (numbers as strings, ``filename`` vs ``fileName``, a top-level
``sid``...), so parsing is lenient about extra fields and strict only about the envelope.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from pydantic import BaseModel

from reconcilers.providers.agora.details import (
    ChannelLifecycle,
    ChannelMember,
    ComponentStarted,
    Details,
    DownloadFailed,
    FileInfos,
    OtherEvent,
    RecorderLeave,
    RecordingError,
    RecordingWarning,
    RoleChange,
    SessionExit,
    SessionFailover,
    SliceStart,
    StatusUpdate,
    Uploaded,
    UploadingProgress,
    WebRecorderStopped,
    details_of,
)

__all__ = [
    "PRODUCT_CLOUD_RECORDING",
    "PRODUCT_RTC",
    "RECORDING_EVENTS",
    "RTC_EVENTS",
    "ChannelLifecycle",
    "ChannelMember",
    "ComponentStarted",
    "Details",
    "DownloadFailed",
    "FileInfos",
    "Notification",
    "NotificationError",
    "OtherEvent",
    "RecorderLeave",
    "RecordingError",
    "RecordingWarning",
    "RoleChange",
    "SessionExit",
    "SessionFailover",
    "SliceStart",
    "StatusUpdate",
    "Uploaded",
    "UploadingProgress",
    "WebRecorderStopped",
    "details_of",
    "parse_notification",
]

PRODUCT_RTC = 1
PRODUCT_CLOUD_RECORDING = 3

#: Cloud recording event types (productId 3), ``docs/providers/agora.md#8-notifications-ncs``.
RECORDING_EVENTS: dict[int, str] = {
    1: "cloud_recording_error",
    2: "cloud_recording_warning",
    3: "cloud_recording_status_update",
    4: "cloud_recording_file_infos",
    11: "session_exit",
    12: "session_failover",
    13: "high_availability_register_success",
    30: "uploader_started",
    31: "uploaded",
    32: "backuped",
    33: "uploading_progress",
    40: "recorder_started",
    41: "recorder_leave",
    42: "recorder_slice_start",
    43: "recorder_audio_stream_state_changed",
    44: "recorder_video_stream_state_changed",
    45: "recorder_snapshot_file",
    60: "vod_started",
    61: "vod_triggered",
    70: "web_recorder_started",
    71: "web_recorder_stopped",
    72: "web_recorder_capability_limit",
    73: "web_recorder_reload",
    80: "transcoder_started",
    81: "transcoder_completed",
    90: "download_failed",
    100: "rtmp_publish_status",
    1001: "postpone_transcode_final_result",
}

#: RTC channel event types (productId 1), ``docs/providers/agora.md#10-rtc-channel-events``.
RTC_EVENTS: dict[int, str] = {
    101: "channel_create",
    102: "channel_destroy",
    103: "broadcaster_join",
    104: "broadcaster_leave",
    105: "audience_join",
    106: "audience_leave",
    107: "user_join",
    108: "user_leave",
    111: "role_to_broadcaster",
    112: "role_to_audience",
}


class NotificationError(ValueError):
    """Valid JSON that is not an Agora notification; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@functools.cache
def _envelope_model() -> type[BaseModel]:
    """The model that coerces and names what is wrong, for a body :func:`_exact_envelope` does
    not take. Built on first need: the writer process folds notifications too, and what Agora
    sends never needs it there (importing pydantic cost that process 7.7 MB of its ~35)."""
    from pydantic import BaseModel, ConfigDict, field_validator

    class _Envelope(BaseModel):
        model_config = ConfigDict(extra="allow")

        noticeId: str
        productId: int
        eventType: int
        notifyMs: int | None = None
        payload: dict[str, Any]

        @field_validator("noticeId", mode="before")
        @classmethod
        def _notice_id(cls, value: Any) -> Any:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return str(value)
            return value

    return _Envelope


class _Exact(NamedTuple):
    """An envelope's fields, with their exact types (see :func:`_exact_envelope`)."""

    noticeId: str  # the envelope's own names, as in the model
    productId: int
    eventType: int
    notifyMs: int | None
    payload: dict[str, Any]


def _str_or_none(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class Notification:
    """One NCS notification; ``type`` is ``agora.<name>`` (``agora.unknown.<n>`` if unknown)."""

    notice_id: str
    product_id: int
    event_type: int
    name: str
    notify_ms: int | None
    payload: dict[str, Any]
    channel: str | None
    uid: str | None
    sid: str | None
    sequence: int | None
    occurred_ms: int | None

    @property
    def type(self) -> str:
        return f"agora.{self.name}"

    @property
    def is_recording_event(self) -> bool:
        return self.product_id == PRODUCT_CLOUD_RECORDING

    @property
    def details(self) -> dict[str, Any]:
        details = self.payload.get("details")
        return details if isinstance(details, dict) else {}


def _exact_envelope(body: dict[str, Any]) -> _Exact | None:
    """The envelope without validation when every field already has its exact type (what Agora
    sends): the model would give the same values, at several times the cost, twice per event
    (intake and projections). ``None``: let the model coerce, or name what is wrong."""
    notice_id, product_id = body.get("noticeId"), body.get("productId")
    event_type, notify_ms = body.get("eventType"), body.get("notifyMs")
    payload = body.get("payload")
    if (
        type(notice_id) is str
        and type(product_id) is int
        and type(event_type) is int
        and (notify_ms is None or type(notify_ms) is int)
        and type(payload) is dict
    ):
        return _Exact(notice_id, product_id, event_type, notify_ms, payload)
    return None


def parse_notification(body: Any) -> Notification:
    """Parse a decoded JSON body into a :class:`Notification`, or raise :class:`NotificationError`.

    Unknown event types and products are accepted (the provider would otherwise retry them
    forever); only a body without the envelope's fields is rejected.
    """
    if not isinstance(body, dict):
        raise NotificationError("body", "expected a JSON object")
    env = _exact_envelope(body)
    if env is None:
        from pydantic import ValidationError

        try:
            valid = _envelope_model().model_validate(body).model_dump()
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "body"
            raise NotificationError(field, err["msg"]) from None
        env = _Exact(*(valid[name] for name in _Exact._fields))
    payload = env.payload
    if env.productId == PRODUCT_RTC:
        name = RTC_EVENTS.get(env.eventType, f"unknown.{env.eventType}")
        channel = _str_or_none(payload.get("channelName"))
        occurred = _int_or_none(payload.get("ts"))
        occurred_ms = occurred * 1000 if occurred is not None else None
        sequence = _int_or_none(payload.get("clientSeq"))
        sid = None
    else:
        table = RECORDING_EVENTS if env.productId == PRODUCT_CLOUD_RECORDING else {}
        name = table.get(env.eventType, f"unknown.{env.eventType}")
        channel = _str_or_none(payload.get("cname"))
        occurred_ms = _int_or_none(payload.get("sendts"))
        sequence = _int_or_none(payload.get("sequence"))
        sid = _str_or_none(payload.get("sid")) or _str_or_none(body.get("sid"))
    return Notification(
        notice_id=env.noticeId,
        product_id=env.productId,
        event_type=env.eventType,
        name=name,
        notify_ms=env.notifyMs,
        payload=payload,
        channel=channel,
        uid=_str_or_none(payload.get("uid")),
        sid=sid,
        sequence=sequence,
        occurred_ms=occurred_ms,
    )
