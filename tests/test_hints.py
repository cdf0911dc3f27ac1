"""Which provider events wake a room: a recorder's own progress reports do not; anything from a
recorder we did not start, or that can end a recording or change the channel, does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from reconcilers.events import Event
from reconcilers.hints import wakes
from reconcilers.identity import UidRange
from reconcilers.providers.agora.notifications import parse_notification
from service.webhooks.agora import to_event
from tests.helpers import notification

UIDS = UidRange()
OURS = UIDS.recorder_uid("acme/standup", 0)
USER = "12345"


def event_of(document: dict[str, Any]) -> Event:
    new = to_event(parse_notification(document), document, datetime.now(UTC))
    return Event(1, new.source, new.dedup_key, new.type, new.payload, new.room, new.session,
                 datetime.now(UTC))


def recording(event_type: int, uid: str = OURS, **details: Any) -> Event:
    return event_of(notification("n", event_type=event_type, uid=uid, details=details or None))


def rtc(event_type: int, uid: int) -> Event:
    document = {"noticeId": "r", "productId": 1, "eventType": event_type, "notifyMs": 1,
                "payload": {"channelName": "standup", "uid": uid, "clientSeq": 1, "ts": 1}}
    return event_of(document)


@pytest.mark.parametrize(
    "event, expected",
    [
        (recording(40), True),  # recorder_started: the room's conditions change
        (recording(42), False),  # slice start
        (recording(30), False),  # uploader started
        (recording(4, fileList=[]), False),  # file infos
        (recording(3, status=4), False),  # status: recording
        (recording(3, status=1), False),  # status: starting
        (recording(3, status=8), True),  # status: stopped
        (recording(3, status="4"), True),  # not what Agora sends: wake, to be safe
        (recording(40, uid=USER), True),  # a recorder we did not start: maybe an orphan
        (recording(11, exitStatus=1), True),  # session exit
        (recording(41, leaveCode=2), True),  # recorder left
        (recording(1, errorCode=50, errorMsg="x", errorLevel=5, module=0), True),
        (rtc(107, int(OURS)), False),  # our recorder joined the channel
        (rtc(107, int(USER)), True),  # a user joined: a waiting room may start
        (rtc(108, int(OURS)), True),  # our recorder left
        (rtc(101, int(USER)), True),  # channel created
    ],
)
def test_which_events_wake_a_room(event: Event, expected: bool) -> None:
    assert wakes(event, UIDS) is expected


def test_events_of_other_sources_always_wake() -> None:
    assert wakes(Event(1, "api", "k", "room.desired", {}, "acme/a", None, datetime.now(UTC)), UIDS)
    assert wakes(Event(2, "cloudflare", "k", "x", {}, "a", None, datetime.now(UTC)), UIDS)
