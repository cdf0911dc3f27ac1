"""How RealtimeKit webhooks fold into the ``sessions``, ``presence`` and ``recording_segments``
rows (pure, no I/O).

:mod:`reconcilers.projections` and :mod:`reconcilers.catalog` hand every ``cloudflare`` event
here through the bundle, so the rows
have the same shape for every provider: a session keyed ``cloudflare:<recording id>`` and
indexed by ``cloudflare/<meeting id>``; a presence row for the meeting in which a single
pseudo-user ``meeting`` is present while the meeting is live. ``meeting.started`` (or any
participant joining) makes it present, ``meeting.ended`` absent; an event older than the last
one applied is ignored, so a late retry cannot bring an ended meeting back to life. That is how
the plan learns a meeting is empty and waits for the next start instead of looping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconcilers.events import Event, Row
from reconcilers.folding import PRESENCE, add_files, channel_key, event_ms, provider_ms
from reconcilers.providers.cloudflare.recordings import parse_recording
from reconcilers.providers.cloudflare.webhooks import (
    MEETING_ENDED,
    MEETING_STARTED,
    PARTICIPANT_JOINED,
    PREFIX,
    RECORDING_STATUS,
    parse_webhook,
)

PROVIDER = "cloudflare"
MEETING_USER = "meeting"

#: Statuses only move forward (§1.5); a late retry of an earlier one must not undo a later one.
_RANK = {"INVOKED": 0, "RECORDING": 1, "PAUSED": 1, "UPLOADING": 2, "UPLOADED": 3, "ERRORED": 3}
_PRESENCE_TYPES = frozenset(
    PREFIX + name for name in (MEETING_STARTED, MEETING_ENDED, PARTICIPANT_JOINED)
)


def session_keys(event: Event) -> Sequence[str]:
    if event.type == PREFIX + RECORDING_STATUS and event.session:
        return [f"{PROVIDER}:{event.session}"]
    return []


def fold_session(data: dict[str, Any], event: Event, at: int) -> None:
    """Apply one ``recording.statusUpdate`` to a session row's ``data`` (in place)."""
    body = event.payload
    meeting = body.get("meeting") if isinstance(body.get("meeting"), dict) else {}
    recording = parse_recording(body.get("recording") or {}, (meeting or {}).get("id"))
    if recording is None or recording.status is None:
        return
    data.setdefault("provider", PROVIDER)
    data.setdefault("sid", recording.id)
    data["channel"] = data.get("channel") or recording.meeting_id or event.room
    rank = _RANK.get(recording.status, -1)
    seen = data.get("status_rank")
    if seen is not None and rank < seen:
        return  # a late redelivery of an earlier status
    data["status_rank"] = rank
    ended = data.get("state") == "ended"
    if not ended:
        data["state"] = recording.state
        data["raw_status"] = recording.status
    if recording.status == "RECORDING":
        data["last_progress_ms"] = max(at, data.get("last_progress_ms") or 0)
        data["not_found_since_ms"] = None
    reason = recording.exit_reason
    if reason == "no_users":
        data["exit_reason"] = reason
    elif reason:
        data.setdefault("exit_reason", reason)
    if recording.status == "ERRORED":
        data["last_error"] = {
            "code": "ERRORED",
            "message": recording.stop_reason or "",
            "at_ms": at,
        }
    if recording.status == "UPLOADED":
        data["uploaded"] = True
        if recording.output_file_name:
            data["files"] = sorted(set(data.get("files", [])) | {recording.output_file_name})
        if recording.download_url:
            data["download_url"] = recording.download_url


def presence_keys(event: Event) -> Sequence[str]:
    if event.type in _PRESENCE_TYPES and event.room:
        return [f"{PROVIDER}/{event.room}"]
    return []


def fold_presence(data: dict[str, Any], event: Event, at: int) -> bool:
    """Apply a meeting event to a presence row's ``data`` (in place); ``False`` if stale."""
    if at < (data.get("changed_ms") or 0):
        return False
    live = event.type != PREFIX + MEETING_ENDED
    users = {k: dict(v) for k, v in data.get("users", {}).items()}
    users[MEETING_USER] = {"present": live}
    meeting = event.payload.get("meeting")
    if isinstance(meeting, dict) and meeting.get("sessionId"):
        data["session_id"] = meeting["sessionId"]
    data.update(users=users, known=True, changed_ms=at)
    return True


def apply_presence(row: Row | None, event: Event) -> Row | None:
    """A meeting event on its presence row, ordered by the provider's own clock (its events
    among themselves), seen as of when it reached us."""
    data: dict[str, Any] = dict(row.data) if row else {"users": {}}
    if not fold_presence(data, event, provider_ms(event)):
        return row
    data["seen_ms"] = event_ms(event)
    key = channel_key(PROVIDER, event.room or "")
    return Row(PRESENCE, key, key, data, event.seq)


def segment_keys(event: Event) -> Sequence[str]:
    if event.session and event.type == PREFIX + RECORDING_STATUS:
        return [f"{PROVIDER}:{event.session}"]
    return []


def fold_segment(data: dict[str, Any], event: Event, at: int) -> None:
    """RealtimeKit's ``recording.statusUpdate``: UPLOADED names the file; ERRORED ends it."""
    recording = parse_webhook(event.payload).recording
    if recording is None:
        return
    data.setdefault("provider", PROVIDER)
    data.setdefault("sid", recording.id)
    data["channel"] = data.get("channel") or recording.meeting_id
    if recording.status == "UPLOADED":
        if recording.output_file_name:
            add_files(data, [recording.output_file_name])
        data["upload"] = "uploaded"
        data.setdefault("ended_ms", at)
    elif recording.status == "ERRORED":
        data.setdefault("ended_ms", at)
        data["abnormal_exit"] = True
