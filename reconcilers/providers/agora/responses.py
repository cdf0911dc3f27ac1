"""Query and stop replies (``docs/providers/agora.md`` §3, §5) as neutral :class:`SessionStatus` and
:class:`StopResult`.

``serverResponse`` differs by mode and configuration (a JSON file list, one M3U8 name as a
string, nothing with screenshots, or web mode's ``extensionServiceState``), and real replies
drift from the docs: ``status`` as a string, ``filename`` vs ``fileName``, ``sliceStartTime`` in
seconds or milliseconds, and older stop replies spelling ``payload`` as ``playload``.
"""

from __future__ import annotations

from typing import Any

from reconcilers.providers.agora._values import (
    as_bool,
    as_dict,
    as_int,
    as_list,
    as_ms,
    as_str,
    recorded_files,
)
from reconcilers.providers.base import (
    ChannelUsers,
    RecordedFile,
    SessionState,
    SessionStatus,
    StopResult,
)

#: ``serverResponse.status`` -> state; 4 or 5 is Agora's own test for "started".
STATUS_STATES: dict[int, SessionState] = {
    0: "starting",
    1: "starting",
    2: "starting",
    3: "starting",
    4: "recording",
    5: "recording",
    6: "stopping",
    7: "stopping",
    8: "ended",
    20: "ended",
}
#: ``web_recorder_service`` ``payload.state``; the web query can say status 0 while recording.
WEB_STATES: dict[str, SessionState] = {
    "init": "starting",
    "inProgress": "recording",
    "exit": "stopping",
}
WEB_RECORDER = "web_recorder_service"
RTMP_PUBLISHER = "rtmp_publish_service"
UPLOADER = "upload_service"


def services(server: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``extensionServiceState`` by ``serviceName``, each its ``payload`` (or ``playload``)."""
    found: dict[str, dict[str, Any]] = {}
    for entry in as_list(server.get("extensionServiceState")):
        entry = as_dict(entry)
        name = as_str(entry.get("serviceName"))
        if name is not None:
            found[name] = as_dict(entry.get("payload") or entry.get("playload"))
    return found


def _dedupe(files: list[RecordedFile]) -> tuple[RecordedFile, ...]:
    seen: dict[str, RecordedFile] = {}
    for f in files:
        seen.setdefault(f.name, f)
    return tuple(seen.values())


def parse_query(body: dict[str, Any]) -> SessionStatus:
    """A query reply of any mode; ``unknown`` when the status cannot be read."""
    server = as_dict(body.get("serverResponse"))
    raw = server.get("status")
    status = as_int(raw)
    state: SessionState = STATUS_STATES.get(status, "unknown") if status is not None else "unknown"
    files = list(recorded_files(server.get("fileList")))
    detail: dict[str, Any] = {}
    for key in ("fileListMode", "sliceStartTime"):
        if key in server:
            detail[key] = as_ms(server[key]) if key == "sliceStartTime" else server[key]
    by_name = services(server)
    web = by_name.get(WEB_RECORDER)
    if web is not None:
        web_state = as_str(web.get("state"))
        detail["web_state"] = web_state
        detail["onhold"] = as_bool(web.get("onhold"), False)
        files += recorded_files(web.get("fileList"))
        if state not in ("stopping", "ended") and web_state in WEB_STATES:
            state = WEB_STATES[web_state]
    rtmp = by_name.get(RTMP_PUBLISHER)
    if rtmp is not None:
        detail["rtmp"] = [
            {"url": as_str(o.get("rtmpUrl")), "status": as_str(o.get("status"))}
            for o in map(as_dict, as_list(rtmp.get("outputs")))
        ]
    return SessionStatus(
        state=state,
        raw_status=status if status is not None else as_str(raw),
        files=_dedupe(files),
        detail=detail,
    )


def parse_stop(body: dict[str, Any]) -> StopResult:
    """A stop reply: the files and ``uploadingStatus`` (``uploaded``, ``backuped``: files may
    still arrive, ``unknown``). A code 50 reply (uploads outlived the wait) reads ``timeout``."""
    server = as_dict(body.get("serverResponse"))
    by_name = services(server)
    files = list(recorded_files(server.get("fileList")))
    files += recorded_files(by_name.get(WEB_RECORDER, {}).get("fileList"))
    status = as_str(server.get("uploadingStatus")) or as_str(
        by_name.get(UPLOADER, {}).get("uploadingStatus")
    )
    if status is None and as_int(body.get("code")) == 50:
        status = "timeout"
    return StopResult(files=_dedupe(files), upload_status=status)


def parse_channel_users(body: dict[str, Any]) -> ChannelUsers:
    """The user list reply: ``{"success": true, "data": {"channel_exist": ..., "mode": 1,
    "total": n, "users": [...]}}``, or for the live profile (mode 2) ``broadcasters`` beside
    ``audience``. Only users (communication) or hosts (live) keep a recorder from idling."""
    data = as_dict(body.get("data"))
    if not as_bool(data.get("channel_exist"), False):
        return ChannelUsers(exists=False)
    key = "broadcasters" if as_int(data.get("mode")) == 2 else "users"
    uids = (as_str(uid) for uid in as_list(data.get(key)))
    return ChannelUsers(exists=True, users=tuple(uid for uid in uids if uid is not None))
