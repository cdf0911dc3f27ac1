"""``CloudflareProvider``: the :class:`~reconcilers.providers.base.Provider` port over RealtimeKit
recordings.

RealtimeKit needs nothing before a start, so ``reserve`` only checks the start body (a bad spec
costs no call) and returns an empty :class:`Reservation`. A session's ``sid`` is the recording
id, its ``channel`` the meeting id; ``recorder_uid`` is ours only (RealtimeKit has no such
thing), kept so that segments stay tracked the same way for every provider.

The recorder's identity is the meeting: one active recording per meeting (we never send
``allow_multiple_recordings``). So a start that conflicts after a crash, where Agora would
answer 7 or 53, is resolved here: the meeting's active recording is adopted as this segment's
when it was started through the REST API by the organization (our credentials; ``start_reason``
``API_CALL`` by ``ORGANIZATION``, §1.4); one started by a participant or by
``record_on_start`` is somebody else's and comes back as :class:`AlreadyRecording`. A
consequence: a make-before-break rollover is not possible on Cloudflare, the current recording
continues until RealtimeKit stops it at ``max_seconds`` and the next segment then starts.
"""

from __future__ import annotations

from typing import Any

import httpx

from reconcilers.outcomes import AlreadyRecording, Outcome, Rejected, Retryable
from reconcilers.providers.base import (
    Mode,
    RecordedFile,
    Reservation,
    SessionHandle,
    SessionStatus,
    StartRequest,
    StopResult,
)
from reconcilers.providers.cloudflare.client import (
    BeforeRequest,
    CloudflareClient,
    CloudflareConfig,
    Reply,
)
from reconcilers.providers.cloudflare.models import start_body, validate_options
from reconcilers.providers.cloudflare.recordings import Recording, parse_recording


class CloudflareProvider:
    """RealtimeKit recordings behind the provider port (``name = "cloudflare"``)."""

    name = "cloudflare"

    def __init__(
        self,
        config: CloudflareConfig,
        *,
        client: CloudflareClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        before_request: BeforeRequest | None = None,
    ) -> None:
        self.config = config
        self.client = client or CloudflareClient(
            config, transport=transport, before_request=before_request
        )

    def validate_options(self, mode: Mode, options: dict[str, Any]) -> dict[str, Any]:
        return validate_options(mode, options)

    async def reserve(self, request: StartRequest) -> Reservation | Outcome:
        try:
            start_body(request)
        except ValueError as exc:
            return Rejected("invalid_request", str(exc))
        return Reservation()

    async def start(
        self, request: StartRequest, reservation: Reservation
    ) -> SessionHandle | Outcome:
        try:
            body = start_body(request)
        except ValueError as exc:
            return Rejected("invalid_request", str(exc))
        result = await self.client.start(body)
        if isinstance(result, AlreadyRecording):
            return await self._adopt_active(request, result)
        if not isinstance(result, Reply):
            return result
        recording = _recording(result.data)
        if recording is None:
            return Retryable("no_recording_id", "start answered without a recording id")
        return self._handle(request, recording.id)

    async def query(self, handle: SessionHandle) -> SessionStatus | Outcome:
        result = await self.client.get(handle.sid)
        if not isinstance(result, Reply):
            return result
        recording = _recording(result.data)
        if recording is None:
            return Retryable("no_recording", "get answered without a recording")
        return _status(recording)

    async def update(self, handle: SessionHandle, options: dict[str, Any]) -> Outcome | None:
        """Nothing of a RealtimeKit recording changes live: every option needs a new segment."""
        return None

    async def stop(self, handle: SessionHandle) -> StopResult | Outcome:
        result = await self.client.stop(handle.sid)
        if not isinstance(result, Reply):
            return result
        recording = _recording(result.data)
        return StopResult(
            files=_files(recording) if recording else (),
            upload_status=recording.status if recording else None,
        )

    async def channel_users(self, channel: str) -> None:
        """RealtimeKit's participant webhooks are the only account of a meeting kept here."""
        return None

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- helpers ---------------------------------------------------------------------------

    def _handle(self, request: StartRequest, recording_id: str) -> SessionHandle:
        return SessionHandle(
            provider=self.name,
            channel=request.channel,
            recorder_uid=request.recorder_uid,
            mode=request.mode,
            sid=recording_id,
        )

    async def _adopt_active(
        self, request: StartRequest, conflict: AlreadyRecording
    ) -> SessionHandle | Outcome:
        active = await self.client.active(request.channel)
        if active is None:
            return Retryable(conflict.code, "start conflicted but no recording is active")
        if not isinstance(active, Reply):
            return active
        recording = _recording(active.data)
        if recording is not None and _started_by_us(recording):
            return self._handle(request, recording.id)
        return conflict


def _recording(data: Any) -> Recording | None:
    return parse_recording(data) if isinstance(data, dict) else None


def _started_by_us(recording: Recording) -> bool:
    """Started through the REST API with organization credentials, as this service does."""
    return recording.start_reason in (None, "API_CALL") and recording.start_caller in (
        None,
        "ORGANIZATION",
    )


def _files(recording: Recording) -> tuple[RecordedFile, ...]:
    name = recording.output_file_name
    return (RecordedFile(name=name),) if name and recording.status == "UPLOADED" else ()


def _status(recording: Recording) -> SessionStatus:
    detail: dict[str, Any] = {"exit_reason": recording.exit_reason}
    if recording.download_url:
        detail["download_url"] = recording.download_url
    return SessionStatus(
        state=recording.state, raw_status=recording.status, files=_files(recording), detail=detail
    )
