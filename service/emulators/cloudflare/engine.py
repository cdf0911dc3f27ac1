"""Meetings and recordings over emulated time: RealtimeKit's documented lifecycle (§1.5, §2.2).

start → ``INVOKED`` → after ``invoke_seconds`` ``RECORDING`` → stop (API, ``max_seconds``, or
``empty_timeout`` with nobody in the meeting: ``ALL_PEERS_LEFT``) → ``UPLOADING`` → after
``upload_seconds`` ``UPLOADED``; a recording stopped before ``min_recording_seconds``, stopped
while ``INVOKED``, or killed ends ``ERRORED``. One active recording per meeting unless
``allow_multiple_recordings``. Meetings start when the first participant joins and end when the
last one leaves (``ALL_PARTICIPANTS_LEFT``) or the host ends them. Every step sends the webhook
RealtimeKit documents for it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from service.emulators.framework.clock import Clock
from service.emulators.framework.control import ControlError

from .config import EmulatorConfig
from .faults import FaultInjector
from .model import FINAL, Meeting, Participant, Recording, iso
from .webhooks import Webhook, seeded_uuid

STORAGE_TYPES = frozenset({"aws", "azure", "digitalocean", "gcs", "sftp"})


class ApiError(Exception):
    """A REST answer other than success: HTTP status and message (Cloudflare's error shape)."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or status


class Engine:
    """Owns every meeting and recording; all mutation happens here, on the event loop."""

    def __init__(
        self,
        config: EmulatorConfig,
        clock: Clock,
        faults: FaultInjector,
        key: rsa.RSAPrivateKey,
        emit: Callable[[Webhook], None],
    ) -> None:
        self.config = config
        self.clock = clock
        self.faults = faults
        self.key = key
        self.webhook_url = config.webhook_url
        self._emit = emit
        self._ids = random.Random(f"{config.seed}:ids")
        self._deliveries = random.Random(f"{config.seed}:deliveries")
        self.meetings: dict[str, Meeting] = {}
        self.recordings: dict[str, Recording] = {}
        self._empty_timers: dict[str, Any] = {}

    # -- meetings ---------------------------------------------------------------------------

    def meeting(self, meeting_id: str) -> Meeting:
        found = self.meetings.get(meeting_id)
        if found is None:
            found = self.meetings[meeting_id] = Meeting(
                meeting_id, f"Meeting {meeting_id}", self.clock.now_ms()
            )
        return found

    def join(self, meeting_id: str, peer_id: str | None = None, name: str = "guest") -> str:
        meeting = self.meeting(meeting_id)
        peer = peer_id or seeded_uuid(self._ids)
        if peer in meeting.participants:
            return peer
        now = self.clock.now_ms()
        if not meeting.live:
            meeting.session_id = seeded_uuid(self._ids)
            meeting.started_ms, meeting.ended_ms = now, None
            self._meeting_event("meeting.started", meeting)
        participant = Participant(peer, name, now)
        meeting.participants[peer] = participant
        self._participant_event("meeting.participantJoined", meeting, participant, None)
        timer = self._empty_timers.pop(meeting_id, None)
        if timer is not None:
            timer.cancel()
        return peer

    def leave(self, meeting_id: str, peer_id: str) -> None:
        meeting = self.meetings.get(meeting_id)
        if meeting is None or peer_id not in meeting.participants:
            raise ControlError(404, f"no participant {peer_id} in meeting {meeting_id}")
        participant = meeting.participants.pop(peer_id)
        self._participant_event(
            "meeting.participantLeft", meeting, participant, self.clock.now_ms()
        )
        if not meeting.participants:
            self._end(meeting, "ALL_PARTICIPANTS_LEFT")

    def end_meeting(self, meeting_id: str) -> None:
        meeting = self.meetings.get(meeting_id)
        if meeting is None or not meeting.live:
            raise ControlError(404, f"meeting {meeting_id} is not live")
        for peer in list(meeting.participants):
            participant = meeting.participants.pop(peer)
            self._participant_event(
                "meeting.participantLeft", meeting, participant, self.clock.now_ms()
            )
        self._end(meeting, "HOST_ENDED_MEETING")

    def _end(self, meeting: Meeting, reason: str) -> None:
        meeting.ended_ms = self.clock.now_ms()
        self._meeting_event("meeting.ended", meeting, reason=reason)
        self._arm_empty_timer(meeting)

    def _arm_empty_timer(self, meeting: Meeting) -> None:
        """Auto-stop the meeting's recordings after ``empty_timeout`` with nobody in it."""
        if meeting.participants or meeting.id in self._empty_timers:
            return
        if not any(r.active for r in self._of(meeting.id)):
            return

        def fire() -> None:
            self._empty_timers.pop(meeting.id, None)
            if meeting.participants:
                return
            for recording in self._of(meeting.id):
                if recording.active:
                    self._stop(recording, "ALL_PEERS_LEFT")

        self._empty_timers[meeting.id] = self.clock.call_later(self.config.empty_timeout, fire)

    # -- recordings (REST) ------------------------------------------------------------------

    def _of(self, meeting_id: str) -> list[Recording]:
        return [r for r in self.recordings.values() if r.meeting_id == meeting_id]

    def active(self, meeting_id: str) -> Recording | None:
        return next((r for r in self._of(meeting_id) if r.active), None)

    def get(self, recording_id: str) -> Recording:
        recording = self.recordings.get(recording_id)
        if recording is None:
            raise ApiError(404, "Recording not found")
        return recording

    def start(self, body: dict[str, Any], caller: str = "ORGANIZATION") -> Recording:
        meeting_id = body.get("meeting_id")
        if not isinstance(meeting_id, str) or not meeting_id:
            raise ApiError(400, "meeting_id is required")
        max_seconds = body.get("max_seconds", self.config.default_max_seconds)
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, int):
            raise ApiError(400, "max_seconds must be an integer")
        if not 60 <= max_seconds <= 86_400:
            raise ApiError(400, "max_seconds must be between 60 and 86400")
        storage = body.get("storage_config")
        if storage is not None and (
            not isinstance(storage, dict) or storage.get("type") not in STORAGE_TYPES
        ):
            raise ApiError(400, "storage_config.type is invalid")
        if not body.get("allow_multiple_recordings") and self.active(meeting_id):
            raise ApiError(409, "Recording already in progress for this meeting")
        bucket = body.get("realtimekit_bucket_config")
        recording = Recording(
            id=seeded_uuid(self._ids),
            meeting_id=meeting_id,
            status="INVOKED",
            invoked_ms=self.clock.now_ms(),
            max_seconds=max_seconds,
            file_name_prefix=body.get("file_name_prefix"),
            storage=storage,
            vendor_bucket=not isinstance(bucket, dict) or bucket.get("enabled", True) is not False,
            start_caller=caller,
            session_id=self.meeting(meeting_id).session_id,
        )
        self.recordings[recording.id] = recording
        if self.config.invoked_webhook:
            self._status_event(recording)
        recording.timers.append(
            self.clock.call_later(self.config.invoke_seconds, lambda: self._begin(recording))
        )
        return recording

    def act(self, recording_id: str, action: Any) -> Recording:
        recording = self.get(recording_id)
        if action == "stop":
            if not recording.active:
                raise ApiError(409, f"Recording is not active ({recording.status})")
            self._stop(recording, "API_CALL")
        elif action == "pause":
            if recording.status != "RECORDING":
                raise ApiError(409, f"Recording is not recording ({recording.status})")
            recording.status = "PAUSED"
        elif action == "resume":
            if recording.status != "PAUSED":
                raise ApiError(409, f"Recording is not paused ({recording.status})")
            recording.status = "RECORDING"
        else:
            raise ApiError(400, "action must be one of stop, pause, resume")
        return recording

    def kill(self, recording_id: str) -> Recording:
        """The recorder dies: ``ERRORED`` with ``INTERNAL_ERROR``, no file."""
        recording = self.recordings.get(recording_id)
        if recording is None:
            raise ControlError(404, f"no recording {recording_id}")
        if recording.status in FINAL:
            raise ControlError(409, f"recording {recording_id} already {recording.status}")
        self._finish(recording, "ERRORED", "INTERNAL_ERROR")
        return recording

    # -- transitions ------------------------------------------------------------------------

    def _begin(self, recording: Recording) -> None:
        if recording.status != "INVOKED":
            return
        recording.status = "RECORDING"
        recording.started_ms = self.clock.now_ms()
        meeting = self.meeting(recording.meeting_id)
        recording.session_id = recording.session_id or meeting.session_id
        self._status_event(recording)
        recording.timers.append(
            self.clock.call_later(recording.max_seconds, lambda: self._stop(recording, None))
        )
        kill_after = self.faults.kill_after()
        if kill_after is not None:
            recording.timers.append(
                self.clock.call_later(kill_after, lambda: self._kill_quietly(recording))
            )
        self._arm_empty_timer(meeting)

    def _kill_quietly(self, recording: Recording) -> None:
        if recording.status not in FINAL:
            self._finish(recording, "ERRORED", "INTERNAL_ERROR")

    def _stop(self, recording: Recording, reason: str | None) -> None:
        """Stop a recording; ``reason`` ``None`` is the ``max_seconds`` auto-stop, whose
        ``stop_reason`` the doc does not name (**UNVERIFIED**): it is left empty."""
        if not recording.active:
            return
        recording.cancel_timers()
        now = self.clock.now_ms()
        started = recording.started_ms
        if started is None or (now - started) / 1000 < self.config.min_recording_seconds:
            self._finish(recording, "ERRORED", reason)
            return
        recording.status, recording.stopped_ms, recording.stop_reason = "UPLOADING", now, reason
        self._status_event(recording)
        recording.timers.append(
            self.clock.call_later(
                self.config.upload_seconds, lambda: self._finish(recording, "UPLOADED", reason)
            )
        )

    def _finish(self, recording: Recording, status: str, reason: str | None) -> None:
        recording.cancel_timers()
        recording.status, recording.stop_reason = status, reason
        recording.stopped_ms = recording.stopped_ms or self.clock.now_ms()
        recording.killed = reason == "INTERNAL_ERROR"
        self._status_event(recording)

    # -- webhooks ---------------------------------------------------------------------------

    def _status_event(self, recording: Recording) -> None:
        meeting = self.meetings.get(recording.meeting_id)
        self._send(
            {
                "event": "recording.statusUpdate",
                "recording": recording.to_webhook(meeting),
                "meeting": (meeting or self.meeting(recording.meeting_id)).to_json(),
            }
        )

    def _meeting_event(self, name: str, meeting: Meeting, **extra: Any) -> None:
        self._send({"event": name, "meeting": meeting.to_json(), **extra})

    def _participant_event(
        self, name: str, meeting: Meeting, participant: Participant, left_ms: int | None
    ) -> None:
        body: dict[str, Any] = {
            "peerId": participant.peer_id,
            "userDisplayName": participant.name,
            "customParticipantId": participant.peer_id,
            "joinedAt": iso(participant.joined_ms),
        }
        if left_ms is not None:
            body["leftAt"] = iso(left_ms)
        self._send({"event": name, "meeting": meeting.to_json(), "participant": body})

    def _send(self, body: dict[str, Any]) -> None:
        if self.webhook_url is None:
            return
        hook = Webhook(
            self.webhook_url,
            body,
            self.key,
            self.config.webhook_id,
            lambda: seeded_uuid(self._deliveries),
        )
        if self.config.stable_delivery_id:
            hook.delivery_id = seeded_uuid(self._deliveries)
        self._emit(hook)
