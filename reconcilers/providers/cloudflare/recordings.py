"""RealtimeKit's recording object and statuses (``docs/providers/cloudflare.md`` §1.4-§1.5), in
neutral terms.

The REST object (snake_case) and the webhook's ``recording`` (camelCase) describe the same
thing; :func:`parse_recording` reads either, leniently: ``fileSize`` comes as a string or a
number, timestamps with a ``T`` or a space, and the envelope may say ``data`` or ``result``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconcilers.providers.base import SessionState

STATUSES = ("INVOKED", "RECORDING", "UPLOADING", "UPLOADED", "ERRORED", "PAUSED")

#: Our observed state for each documented status. ``PAUSED`` is in the enum only, undescribed
#: (§1.5): nothing records, so it counts as "starting": a pause that outlasts the start-confirm
#: window is healed like a recorder that never started (stopped, then a new segment).
STATE_OF: dict[str, SessionState] = {
    "INVOKED": "starting",
    "RECORDING": "recording",
    "PAUSED": "starting",
    "UPLOADING": "stopping",
    "UPLOADED": "ended",
    "ERRORED": "ended",
}

#: ``stop_reason.reason`` values, and what they mean for the plan.
STOP_NO_PEERS = "ALL_PEERS_LEFT"
STOP_ERROR = "INTERNAL_ERROR"


def state_of(status: str | None) -> SessionState:
    return STATE_OF.get((status or "").upper(), "unknown")


@dataclass(frozen=True)
class Recording:
    """One recording as RealtimeKit reports it; ``raw`` keeps the object as received."""

    id: str
    status: str | None
    meeting_id: str | None
    output_file_name: str | None
    download_url: str | None
    stop_reason: str | None
    start_reason: str | None
    start_caller: str | None
    started_ms: int | None
    stopped_ms: int | None
    file_size: int | None
    raw: dict[str, Any]

    @property
    def state(self) -> SessionState:
        return state_of(self.status)

    @property
    def exit_reason(self) -> str | None:
        """``no_users`` for an empty-meeting auto-stop (as Agora's idle exit), else the
        provider's reason, lowercased; ``errored`` for ERRORED without one."""
        if self.stop_reason == STOP_NO_PEERS:
            return "no_users"
        if self.stop_reason:
            return self.stop_reason.lower()
        return "errored" if self.status == "ERRORED" else None


def _pick(data: dict[str, Any], *names: str) -> Any:
    for name in names:
        if data.get(name) not in (None, ""):
            return data[name]
    return None


def _str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return None if value in (None, "") else int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 with ``T`` or a space, ``Z`` or an offset, any fraction; ``None`` if unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace(" ", "T", 1)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def time_ms(value: Any) -> int | None:
    parsed = parse_time(value)
    return int(parsed.timestamp() * 1000) if parsed else None


def _reason(value: Any) -> tuple[str | None, str | None]:
    if not isinstance(value, dict):
        return None, None
    caller = value.get("caller")
    return _str(value.get("reason")), _str(caller.get("type")) if isinstance(caller, dict) else None


def parse_recording(data: dict[str, Any], meeting_id: str | None = None) -> Recording | None:
    """A recording from a REST object or a webhook's ``recording``; ``None`` without an id.

    ``meeting_id`` fills in the meeting when the object lacks it (Dyte's ``UPLOADING`` example).
    """
    rid = _str(_pick(data, "id", "recordingId", "recording_id"))
    if rid is None:
        return None
    stop, _ = _reason(_pick(data, "stop_reason", "stopReason"))
    start, caller = _reason(_pick(data, "start_reason", "startReason"))
    status = _str(data.get("status"))
    return Recording(
        id=rid,
        status=status.upper() if status else None,
        meeting_id=_str(_pick(data, "meeting_id", "meetingId")) or meeting_id,
        output_file_name=_str(_pick(data, "output_file_name", "outputFileName")),
        download_url=_str(_pick(data, "download_url", "downloadUrl")),
        stop_reason=stop,
        start_reason=start,
        start_caller=caller,
        started_ms=time_ms(_pick(data, "started_time", "startedTime", "invoked_time")),
        stopped_ms=time_ms(_pick(data, "stopped_time", "stoppedTime")),
        file_size=_int(_pick(data, "file_size", "fileSize")),
        raw=data,
    )


def envelope_data(body: dict[str, Any]) -> Any:
    """The payload of a ``{"success": true, "data": ...}`` answer; ``result`` is accepted too
    (a third-party wrapper reads it there, §1.1)."""
    if "data" in body:
        return body["data"]
    return body.get("result")
