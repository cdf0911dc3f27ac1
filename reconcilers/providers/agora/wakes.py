"""Which Agora events are worth waking a pass for (the hooks behind :mod:`reconcilers.hints`).

A recording we started reports itself about a dozen times as it comes up: status updates,
components and slices starting, file lists, its own join to the channel. None of these changes
what a pass would do now (a pass reads them when it runs), and in the 10,000-room benchmark the
passes they woke cost more CPU than the starts.

Whatever comes from a recorder outside our uid range always wakes (it may be an orphan to
stop), and so does anything that can end, fail or move a recording, or change who is in the
channel. So does the recorder's first word that it records (``recorder_started``, or a web
recorder's): the room's conditions change (Progressing -> Recording), and only a pass files
them in the index ``GET /v1/rooms?condition=`` reads; without it a room that records was
listed as recording only at its next query, a minute later.
"""

from __future__ import annotations

from typing import Any

from reconcilers.events import Event
from reconcilers.identity import UidRange

#: Agora recording events that only report a recorder's progress.
_PROGRESS = frozenset(
    f"agora.{name}"
    for name in (
        "recorder_slice_start",
        "recorder_audio_stream_state_changed",
        "recorder_video_stream_state_changed",
        "recorder_snapshot_file",
        "uploader_started",
        "uploading_progress",
        "uploaded",
        "backuped",
        "cloud_recording_file_infos",
        "high_availability_register_success",
    )
)
_STATUS_UPDATE = "agora.cloud_recording_status_update"
# Statuses 0..5: starting up to recording; 6 and up: stopping or ended
# (docs/providers/agora.md#3-query).
_RUNNING = range(0, 6)
_JOINS = frozenset(f"agora.{name}" for name in ("broadcaster_join", "audience_join", "user_join"))
#: Agora's RTC channel events (productId 1): who is in a channel.
_PRESENCE_PRODUCT = 1


def wakes(event: Event, uids: UidRange) -> bool:
    """Whether an Agora event should wake the passes of the keys it concerns now."""
    body: Any = event.payload.get("payload")
    if not isinstance(body, dict) or not uids.contains(body.get("uid")):
        return True
    if event.type in _PROGRESS or event.type in _JOINS:
        return False
    if event.type == _STATUS_UPDATE:
        details = body.get("details")
        status = details.get("status") if isinstance(details, dict) else None
        return not (isinstance(status, int) and status in _RUNNING)
    return True


def wakes_channel(event: Event, uids: UidRange) -> bool:
    """Whether an Agora event should wake a channel that no room wants: only a recorder of
    ours in it does (see :func:`reconcilers.hints.wakes_channel`)."""
    if is_presence(event):
        return False
    body: Any = event.payload.get("payload")
    return isinstance(body, dict) and uids.contains(body.get("uid"))


def is_presence(event: Event) -> bool:
    """An event that tells only who is in a channel (joins, leaves, channel created or gone)."""
    return event.payload.get("productId") == _PRESENCE_PRODUCT
