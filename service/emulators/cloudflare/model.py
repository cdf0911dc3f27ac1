"""The emulator's state: meetings with their participants, and recordings with their timers.

``to_rest`` and ``to_webhook`` render a recording the two ways RealtimeKit does: snake_case in
the REST API (§1.4), camelCase inside ``recording.statusUpdate`` (§2.2, ``fileSize`` a string).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.emulators.framework.clock import Timer

ACTIVE = frozenset({"INVOKED", "RECORDING", "PAUSED"})
FINAL = frozenset({"UPLOADED", "ERRORED"})


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass
class Participant:
    peer_id: str
    name: str
    joined_ms: int


@dataclass
class Meeting:
    id: str
    title: str
    created_ms: int
    participants: dict[str, Participant] = field(default_factory=dict)
    session_id: str | None = None
    started_ms: int | None = None
    ended_ms: int | None = None

    @property
    def live(self) -> bool:
        return self.session_id is not None and self.ended_ms is None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sessionId": self.session_id,
            "title": self.title,
            "status": "LIVE" if self.live else "ENDED",
            "createdAt": iso(self.created_ms),
            "startedAt": iso(self.started_ms),
            "endedAt": iso(self.ended_ms),
            "organizedBy": {"id": "emulator-org", "name": "Emulator"},
        }


@dataclass
class Recording:
    id: str
    meeting_id: str
    status: str
    invoked_ms: int
    max_seconds: int
    file_name_prefix: str | None = None
    storage: dict[str, Any] | None = None
    vendor_bucket: bool = True
    start_reason: str = "API_CALL"
    start_caller: str = "ORGANIZATION"
    session_id: str | None = None
    started_ms: int | None = None
    stopped_ms: int | None = None
    stop_reason: str | None = None
    killed: bool = False
    timers: list[Timer] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()

    @property
    def duration(self) -> int | None:
        if self.started_ms is None or self.stopped_ms is None:
            return None
        return round((self.stopped_ms - self.started_ms) / 1000)

    @property
    def output_file_name(self) -> str | None:
        if self.status != "UPLOADED" or self.started_ms is None:
            return None
        stamp = datetime.fromtimestamp(self.started_ms / 1000, UTC).strftime("%Y%m%d%H%M%S")
        prefix = f"{self.file_name_prefix}_" if self.file_name_prefix else ""
        return f"{prefix}{self.meeting_id}_{stamp}.mp4"

    @property
    def file_size(self) -> int | None:
        duration = self.duration
        return None if duration is None or self.status != "UPLOADED" else duration * 83_000

    def download_url(self) -> str | None:
        if self.status != "UPLOADED" or not self.vendor_bucket:
            return None
        return f"https://emulator.invalid/recordings/{self.id}.mp4"

    def _reason(self, reason: str | None, caller: str | None) -> dict[str, Any] | None:
        if reason is None:
            return None
        return {"reason": reason, "caller": {"type": caller, "user_Id": None, "name": None}}

    def to_rest(self) -> dict[str, Any]:
        expiry = self.stopped_ms + 7 * 86_400_000 if self.stopped_ms else None
        storage = {
            k: v for k, v in (self.storage or {}).items() if k not in ("access_key", "secret")
        }
        return {
            "id": self.id,
            "status": self.status,
            "invoked_time": iso(self.invoked_ms),
            "started_time": iso(self.started_ms),
            "stopped_time": iso(self.stopped_ms),
            "output_file_name": self.output_file_name,
            "session_id": self.session_id,
            "file_size": self.file_size,
            "recording_duration": self.duration,
            "download_url": self.download_url(),
            "audio_download_url": None,
            "download_url_expiry": iso(expiry) if self.download_url() else None,
            "storage_config": storage or None,
            "start_reason": self._reason(self.start_reason, self.start_caller),
            "stop_reason": self._reason(
                self.stop_reason, "ORGANIZATION" if self.stop_reason == "API_CALL" else None
            ),
        }

    def to_webhook(self, meeting: Meeting | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "recordingId": self.id,
            "status": self.status,
            "startedTime": iso(self.started_ms),
            "stoppedTime": iso(self.stopped_ms),
            "meetingId": self.meeting_id,
            "recordingDuration": self.duration,
            "organizationId": "emulator-org",
            "roomUUID": meeting.session_id if meeting else None,
        }
        if self.stop_reason:
            body["stopReason"] = {"reason": self.stop_reason}
        if self.status == "UPLOADED":
            body.update(
                outputFileName=self.output_file_name,
                fileSize=str(self.file_size),
                downloadUrl=self.download_url(),
                audioDownloadUrl=None,
                downloadUrlExpiry=iso((self.stopped_ms or 0) + 7 * 86_400_000),
            )
        return body
