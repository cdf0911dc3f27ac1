"""How Agora's notifications fold into the ``sessions``, ``presence`` and
``recording_segments`` rows (pure, no I/O).

:mod:`reconcilers.projections` and :mod:`reconcilers.catalog` hand every ``agora`` event here
through the bundle: a session is keyed ``agora:<sid>``, a channel's presence
``agora/<channel>``; presence is ordered by each user's ``clientSeq``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconcilers.events import Event, Row
from reconcilers.folding import PRESENCE, add_files, after, channel_key, event_ms, forget_left
from reconcilers.providers.agora import notifications as ncs

PROVIDER = "agora"

_PROGRESS = (
    ncs.ComponentStarted,
    ncs.SliceStart,
    ncs.UploadingProgress,
    ncs.FileInfos,
    ncs.Uploaded,
)
_STATUS_STATE = {
    **dict.fromkeys(range(4), "starting"),
    4: "recording",
    5: "recording",
    6: "stopping",
    7: "stopping",
    8: "ended",
    20: "ended",
}
_RANK = {"unknown": 0, "missing": 1, "starting": 1, "recording": 2, "stopping": 3, "ended": 4}
_RTC_TYPES = frozenset(f"agora.{name}" for name in ncs.RTC_EVENTS.values())
#: The notifications the catalog reads: uploads, file lists, exits, lost files.
_SEGMENT_TYPES = frozenset(
    f"agora.{ncs.RECORDING_EVENTS[n]}" for n in (4, 11, 31, 32, 71, 90) if n in ncs.RECORDING_EVENTS
)


def session_keys(event: Event) -> Sequence[str]:
    return [f"{PROVIDER}:{event.session}"] if event.session else []


def fold_session(data: dict[str, Any], event: Event, at: int) -> None:
    """Apply one notification to a session row's ``data`` (in place)."""
    n = ncs.parse_notification({"sid": event.session, **event.payload})
    d = ncs.details_of(n)
    data.setdefault("provider", PROVIDER)
    data.setdefault("sid", n.sid)
    data["channel"] = data.get("channel") or n.channel
    if n.uid and not data.get("recorder_uid"):
        data["recorder_uid"] = n.uid
    if n.uid and not data.get("uid"):
        data["uid"] = n.uid
    if n.sequence is not None:
        data["last_sequence"] = max(n.sequence, data.get("last_sequence") or -1)
    ended = data.get("state") == "ended"
    if isinstance(d, _PROGRESS):
        data["last_progress_ms"] = max(at, data.get("last_progress_ms") or 0)
        uploader = isinstance(d, ncs.ComponentStarted) and d.component == "uploader"
        if not ended and not uploader and data["state"] in ("unknown", "starting", "missing"):
            # Only the recorder's own news says it is back: an uploader restarting in a
            # failover left the session missing with no 404 time, taken for one gone
            # after the failover window (``make soak``, issue 20).
            data["state"] = "recording"
            data["not_found_since_ms"] = None
        if isinstance(d, ncs.Uploaded):
            names = [f.name for f in d.files]
            data["files"] = sorted(set(data.get("files", [])) | set(names))
            data["uploaded"] = not d.backuped
            data["backuped"] = d.backuped
    elif isinstance(d, ncs.StatusUpdate) and d.status is not None and not ended:
        state = _STATUS_STATE.get(d.status, data["state"])
        # NCS delivers late and out of order: a status only moves a session forward (a
        # late "components starting" once it records made it look unstarted: re-queried,
        # then stopped as stalled, in the 10,000-room benchmark).
        if _RANK.get(state, 0) >= _RANK.get(data["state"], 0):
            data["state"] = state
            data["raw_status"] = d.status
    elif isinstance(d, ncs.SessionFailover):
        data["uid"] = d.new_uid or data.get("uid")
        data["failovers"] = int(data.get("failovers") or 0) + 1
        if not ended:
            data["state"], data["not_found_since_ms"] = "recording", None
            data["last_progress_ms"] = at
    elif isinstance(d, ncs.RecorderLeave):
        if d.no_users:
            data["exit_reason"] = "no_users"
        elif d.client_leave:
            data.setdefault("exit_reason", "stopped")
        elif not data.get("exit_reason"):
            data["exit_reason"] = f"recorder_left:{d.leave_code}"
        if not ended:
            data["state"] = "stopping"
    elif isinstance(d, ncs.SessionExit):
        data["state"] = "ended"
        if d.abnormal:
            data["exit_reason"] = data.get("exit_reason") or "abnormal_exit"
        data.setdefault("exit_reason", "exited")
    elif isinstance(d, ncs.RecordingError) and d.fatal:
        data["last_error"] = {"code": d.code, "message": d.message, "at_ms": at}
        data["last_query_ms"] = None  # a fatal error may end the recording: query now
    elif isinstance(d, ncs.WebRecorderStopped):
        data["files"] = sorted(set(data.get("files", [])) | {f.name for f in d.files})
        if d.code:
            data["exit_reason"] = f"web_recorder_stopped:{d.code}"
            data["state"] = "stopping" if not ended else "ended"


def presence_keys(event: Event) -> Sequence[str]:
    if event.type in _RTC_TYPES and event.room:
        return [channel_key(PROVIDER, event.room)]
    return []


def fold_presence(row: Row | None, event: Event) -> Row | None:
    """Apply one RTC channel event to a channel's presence row."""
    data: dict[str, Any] = dict(row.data) if row else {"users": {}}
    users: dict[str, Any] = {k: dict(v) for k, v in data.get("users", {}).items()}
    d = ncs.details_of(ncs.parse_notification(event.payload))
    at = event_ms(event)
    ts = _rtc_ts(event)
    if isinstance(d, ncs.ChannelLifecycle):
        # 101 means someone joined: evidence of a user even when their own join event is
        # lost (NCS may lose any message). 102 means the last one left, as of its ``ts``:
        # a late 102 must not empty a channel someone joined since (chaos seed 49).
        if d.created:
            data.update(open=True, open_ts=ts)
        else:
            if not after(data.get("open_ts"), ts):
                data["open"] = False
            for user in users.values():
                if not after(user.get("ts"), ts):
                    user["present"] = False
    elif isinstance(d, ncs.ChannelMember | ncs.RoleChange):
        if isinstance(d, ncs.ChannelMember) and d.is_cloud_recorder:
            return (
                row
                if row
                else Row(
                    PRESENCE,
                    channel_key(PROVIDER, d.channel),
                    channel_key(PROVIDER, d.channel),
                    {"users": {}, "known": True},
                    event.seq,
                )
            )
        forgot = data.get("forgot_ts")
        if d.uid not in users and forgot is not None and ts is not None and ts <= forgot:
            return row  # late news of a user forgotten since
        user = users.setdefault(d.uid, {"seq": -1, "present": False})
        seq = d.client_seq if d.client_seq is not None else user["seq"] + 1
        if seq <= user["seq"]:
            return row  # late or duplicate: clientSeq says we know better
        user["seq"] = seq
        user["ts"] = ts
        if isinstance(d, ncs.ChannelMember):
            user["present"] = d.joined and d.role != "audience"
        else:
            user["present"] = d.role == "broadcaster"
        user["at"] = at
    else:
        return row
    forget_left(data, users, at)
    data.update(users=users, known=True, changed_ms=at, seen_ms=at)
    key = channel_key(PROVIDER, event.room or "")
    return Row(PRESENCE, key, key, data, event.seq)


def _rtc_ts(event: Event) -> int | None:
    """An RTC event's own ``ts`` (seconds): orders 101/102, which carry no ``clientSeq``."""
    inner = event.payload.get("payload")
    ts = inner.get("ts") if isinstance(inner, dict) else None
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else None


def segment_keys(event: Event) -> Sequence[str]:
    if event.session and event.type in _SEGMENT_TYPES:
        return [f"{PROVIDER}:{event.session}"]
    return []


def fold_segment(data: dict[str, Any], event: Event, at: int) -> None:
    """Apply an upload, file list, exit or lost-files notification to a recording segment."""
    n = ncs.parse_notification({"sid": event.session, **event.payload})
    d = ncs.details_of(n)
    data.setdefault("provider", PROVIDER)
    data.setdefault("sid", n.sid)
    data["channel"] = data.get("channel") or n.channel
    if isinstance(d, ncs.Uploaded):
        add_files(data, list(d.files))
        data["upload"] = "backuped" if d.backuped else "uploaded"
        data.setdefault("ended_ms", at)
    elif isinstance(d, ncs.FileInfos) and d.playlist:
        add_files(data, [d.playlist])
    elif isinstance(d, ncs.WebRecorderStopped):
        add_files(data, list(d.files))
    elif isinstance(d, ncs.SessionExit):
        data.setdefault("ended_ms", at)
        if d.abnormal:
            data["abnormal_exit"] = True
    elif isinstance(d, ncs.DownloadFailed):
        data["lost"] = sorted(set(data.get("lost", [])) | set(d.files))
