"""RealtimeKit webhook payloads (``docs/providers/cloudflare.md`` §2.1-§2.2): what one means, and
how to tell a redelivery of it.

Every payload has a top-level ``event``; parsing is strict only about what the service acts on
(``recording.id`` and ``recording.status`` of a status update, ``meeting.id`` of meeting events)
and lenient otherwise, since an unknown or odd event answered 4xx is never retried and is lost.

``content_key`` identifies the *fact*, so that a retry is recognised even though its delivery id
changes: ``rtk-uuid`` is "unique per delivery" (§2.3, gap 3), so, as the doc recommends, a
status update is keyed by recording id + status, a meeting event by meeting session, a
participant event by peer; anything else by a hash of its canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from reconcilers.providers.cloudflare.recordings import Recording, parse_recording, time_ms

RECORDING_STATUS = "recording.statusUpdate"
MEETING_STARTED = "meeting.started"
MEETING_ENDED = "meeting.ended"
PARTICIPANT_JOINED = "meeting.participantJoined"
PARTICIPANT_LEFT = "meeting.participantLeft"
MEETING_EVENTS = frozenset({MEETING_STARTED, MEETING_ENDED, PARTICIPANT_JOINED, PARTICIPANT_LEFT})
PREFIX = "cloudflare."


class WebhookError(ValueError):
    """Valid JSON that is not a usable webhook; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Webhook:
    """One RealtimeKit webhook; ``type`` is ``cloudflare.<event>``."""

    event: str
    meeting_id: str | None
    session_id: str | None
    recording: Recording | None
    peer_id: str | None
    occurred_ms: int | None
    content_key: str
    reason: str | None = None

    @property
    def type(self) -> str:
        return PREFIX + self.event


def _obj(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _hash(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def parse_webhook(body: Any) -> Webhook:
    """Parse a decoded JSON body, or raise :class:`WebhookError` naming the field."""
    if not isinstance(body, dict):
        raise WebhookError("body", "expected a JSON object")
    event = body.get("event")
    if not isinstance(event, str) or not event:
        raise WebhookError("event", "a non-empty string is required")
    meeting = _obj(body, "meeting")
    meeting_id = _str(meeting.get("id")) or _str(body.get("meetingId"))
    session_id = _str(meeting.get("sessionId")) or _str(body.get("sessionId"))
    if event == RECORDING_STATUS:
        return _recording_update(body, meeting_id, session_id)
    if event in MEETING_EVENTS:
        if meeting_id is None:
            raise WebhookError("meeting.id", "required for meeting events")
        participant = _obj(body, "participant")
        peer = _str(participant.get("peerId"))
        if event in (PARTICIPANT_JOINED, PARTICIPANT_LEFT):
            if peer is None:
                raise WebhookError("participant.peerId", "required for participant events")
            when = participant.get("joinedAt" if event == PARTICIPANT_JOINED else "leftAt")
            key = f"{event}:{meeting_id}:{session_id}:{peer}"
        else:
            when = meeting.get("startedAt" if event == MEETING_STARTED else "endedAt")
            key = f"{event}:{meeting_id}:{session_id or meeting.get('startedAt')}"
        return Webhook(
            event,
            meeting_id,
            session_id,
            None,
            peer,
            time_ms(when),
            key,
            reason=_str(body.get("reason")),
        )
    return Webhook(event, meeting_id, session_id, None, None, None, f"{event}:{_hash(body)}")


def _recording_update(
    body: dict[str, Any], meeting_id: str | None, session_id: str | None
) -> Webhook:
    data = body.get("recording")
    if not isinstance(data, dict):
        raise WebhookError("recording", "an object is required")
    recording = parse_recording(data, meeting_id)
    if recording is None:
        raise WebhookError("recording.id", "required")
    if recording.status is None:
        raise WebhookError("recording.status", "required")
    if recording.meeting_id is None:
        raise WebhookError("meeting.id", "no meeting id in recording.meetingId or meeting.id")
    late = recording.status in ("UPLOADING", "UPLOADED", "ERRORED")
    occurred = (recording.stopped_ms if late else None) or recording.started_ms
    return Webhook(
        RECORDING_STATUS,
        recording.meeting_id,
        session_id,
        recording,
        None,
        occurred,
        f"{RECORDING_STATUS}:{recording.id}:{recording.status}",
    )
