"""Notification content: what Agora would report, as NCS notices ready for delivery.

The engine says *what happened* (event type, details); this module adds the envelope fields
(``noticeId``, per-sid ``sequence``, ``sendts``, ``serviceType``) and routes productId 3
(cloud recording) and productId 1 (RTC channel) events to their URL and secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconcilers.providers.agora.notifications import (
    PRODUCT_CLOUD_RECORDING,
    PRODUCT_RTC,
    RECORDING_EVENTS,
)
from service.emulators.framework.clock import Clock

from .ids import IdSource
from .model import Task
from .signing import signature_headers

#: serviceType of each recording event the emulator sends
#: (docs/providers/agora.md#8-notifications-ncs).
SERVICE_TYPES: dict[int, int] = {
    1: 0, 3: 0, 4: 0, 11: 0, 12: 0,
    30: 2, 31: 2, 32: 2, 33: 2,
    40: 1, 41: 1, 42: 1,
    70: 6, 71: 6,
}  # fmt: skip


@dataclass(frozen=True)
class Notice:
    """One notification, built once; every (re)send reuses its ``notice_id``."""

    notice_id: str
    product_id: int
    event_type: int
    payload: dict[str, Any]
    url: str
    secret: str

    def envelope(self, notify_ms: int) -> dict[str, Any]:
        return {
            "noticeId": self.notice_id,
            "productId": self.product_id,
            "eventType": self.event_type,
            "notifyMs": notify_ms,
            "payload": self.payload,
        }

    def render(self, notify_ms: int) -> tuple[bytes, dict[str, str]]:
        """One attempt: same ``noticeId``, fresh ``notifyMs``, both signature headers."""
        body = json.dumps(self.envelope(notify_ms), separators=(",", ":"), ensure_ascii=False)
        raw = body.encode()
        return raw, signature_headers(raw, self.secret)

    def describe(self) -> dict[str, Any]:
        return {
            "noticeId": self.notice_id,
            "productId": self.product_id,
            "eventType": self.event_type,
            "sid": self.payload.get("sid"),
        }


@dataclass
class Routes:
    """Where each product's notifications go; changeable at run time (control API)."""

    recording_url: str | None
    recording_secret: str
    rtc_url: str | None
    rtc_secret: str
    rtc_enabled: bool


class EventSink:
    """Builds notices and hands them to ``deliver``; does nothing when no URL is set."""

    def __init__(
        self, routes: Routes, clock: Clock, ids: IdSource, deliver: Callable[[Notice], None]
    ) -> None:
        self.routes = routes
        self._clock = clock
        self._ids = ids
        self._deliver = deliver

    @property
    def recording_enabled(self) -> bool:
        return self.routes.recording_url is not None

    def recording(self, task: Task, event_type: int, **details: Any) -> None:
        """A productId 3 event of ``task``, from the recorder as it is now (its current uid)."""
        url = self.routes.recording_url
        if url is None:
            return
        uid = task.uid if task.generation == 0 else str(task.recorder_uid)
        payload = {
            "cname": task.cname,
            "uid": uid,
            "sid": task.sid,
            "sequence": task.next_sequence(),
            "sendts": self._clock.now_ms(),
            "serviceType": SERVICE_TYPES.get(event_type, 0),
            "details": {"msgName": RECORDING_EVENTS[event_type], **details},
        }
        notice = Notice(
            self._ids.notice_id(),
            PRODUCT_CLOUD_RECORDING,
            event_type,
            payload,
            url,
            self.routes.recording_secret,
        )
        self._deliver(notice)

    def status(self, task: Task, file_list: str = "") -> None:
        """Event 3 with the task's current status."""
        mode = {"individual": 0, "mix": 1}.get(task.mode)
        extra = {} if mode is None else {"recordingMode": mode}
        self.recording(task, 3, status=task.status, fileList=file_list, **extra)

    def rtc(self, event_type: int, payload: dict[str, Any]) -> None:
        """A productId 1 channel event (101..112)."""
        routes = self.routes
        url = routes.rtc_url or routes.recording_url
        if url is None or not routes.rtc_enabled:
            return
        self._deliver(
            Notice(self._ids.notice_id(), PRODUCT_RTC, event_type, payload, url, routes.rtc_secret)
        )
