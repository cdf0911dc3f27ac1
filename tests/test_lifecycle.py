"""The catalog fold and the lifecycle decided from it: pure, from events only."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from reconcilers.events import Event, Fold
from reconcilers.lifecycle import RecordingView, derive
from reconcilers.projections import PROJECTIONS

T0 = datetime(2026, 1, 6, 10, 30, tzinfo=UTC)
ROOM = "acme/standup"
_seq = itertools.count(1)


def ev(source: str, type_: str, payload: dict[str, Any], room: str | None = None,
       session: str | None = None, at: float = 0.0) -> Event:
    n = next(_seq)
    return Event(n, source, f"k{n}", type_, payload, room, session,  # type: ignore[arg-type]
                 T0 + timedelta(seconds=at))


def started(at: float = 0.0) -> Event:
    return ev("api", "recording.started", {"recording_id": "rec1", "channel_key": "agora/standup",
                                           "provider": "agora", "storage": "default"},
              room=ROOM, at=at)


def stopped(at: float) -> Event:
    return ev("api", "recording.stopped", {"recording_id": "rec1"}, room=ROOM, at=at)


def segment(sid: str, at: float) -> Event:
    return ev("reconciler", "result.start", {"sid": sid, "segment": 0, "channel": "standup",
                                             "provider": "agora"}, room=ROOM, at=at)


def stop_result(sid: str, files: list[str], at: float, status: str = "uploaded") -> Event:
    return ev("reconciler", "result.stop", {"sid": sid, "provider": "agora", "files": files,
                                            "upload_status": status}, room=ROOM, at=at)


def ncs(sid: str, event_type: int, details: dict[str, Any], at: float) -> Event:
    from reconcilers.providers.agora.notifications import parse_notification

    body = {"noticeId": f"n{next(_seq)}", "productId": 3, "eventType": event_type,
            "notifyMs": 0, "payload": {"cname": "standup", "uid": "4000000001", "sid": sid,
                                       "sequence": 0, "sendts": 0, "details": details}}
    return ev("agora", parse_notification(body).type, body, room="standup", session=sid, at=at)


def stored(key: str, size: int, sequencer: str = "01", type_: str = "storage.object_created",
           at: float = 0.0) -> Event:
    return ev("storage", type_, {"bucket": "b", "key": key, "size": size, "sequencer": sequencer},
              at=at)


def view(*events: Event) -> RecordingView:
    f = Fold(PROJECTIONS)
    for e in events:
        f.apply(e)
    rec = f.rows[("recordings", "acme/rec1")].data
    segs = [r.data for (p, _), r in f.rows.items() if p == "recording_segments"]
    objects = {r.data["key"]: r.data for (p, _), r in f.rows.items() if p == "storage_objects"}
    room = f.rows.get(("rooms", ROOM))
    return derive(rec, room.data if room else None, segs, objects)


def test_recording_processing_ready_with_size_and_duration_from_the_files() -> None:
    base = [started(), segment("s1", 1)]
    assert view(*base).status == "recording"
    stopping = [*base, stopped(61)]
    assert view(*stopping).status == "processing", "the segment is still live"
    done = [*stopping, stop_result("s1", ["d/s1_standup.m3u8"], 62)]
    assert view(*done).status == "processing", "no file confirmed in storage yet"
    ready = view(*done, stored("d/s1_standup.m3u8", 100), stored("d/s1_standup_1.ts", 900),
                 stored("d/other.ts", 5))
    assert ready.status == "ready"
    assert ready.size_bytes == 1000, "the playlist and its slices, not the neighbours"
    assert ready.duration_seconds == 61


def test_recovery_across_segments_needs_every_file_of_every_segment() -> None:
    events = [started(), segment("s1", 1), ncs("s1", 11, {"msgName": "session_exit",
                                                          "exitStatus": 1}, at=30),
              segment("s2", 40), stopped(100), stop_result("s2", ["d/s2.m3u8"], 101),
              ncs("s1", 31, {"msgName": "uploaded", "status": 0,
                             "fileList": [{"fileName": "d/s1.m3u8", "sliceStartTime": 0}]}, 31),
              stored("d/s2.m3u8", 10)]
    v = view(*events)
    assert v.sids == ("s1", "s2") and v.status == "processing"
    assert view(*events, stored("d/s1.m3u8", 20)).status == "ready"


def test_backuped_upload_stays_processing_until_late_files_arrive() -> None:
    events = [started(), segment("s1", 1), stopped(50),
              ncs("s1", 32, {"msgName": "backuped", "status": 0,
                             "fileList": [{"fileName": "d/s1.m3u8"}]}, 51)]
    v = view(*events)
    assert v.status == "processing" and v.backuped
    assert view(*events, stored("d/s1.m3u8", 7, at=900)).status == "ready"


def test_nothing_recorded_fails_on_agora_435_and_on_no_files() -> None:
    no_data = ev("reconciler", "result.stop", {"sid": "s1", "provider": "agora",
                                               "outcome": "ended", "code": 435}, room=ROOM, at=9)
    v = view(started(), segment("s1", 1), stopped(8), no_data)
    assert (v.status, v.reason) == ("failed", "nothing_recorded")
    v = view(started(), segment("s1", 1), stopped(8), stop_result("s1", [], 9))
    assert (v.status, v.reason) == ("failed", "nothing_recorded")
    assert view(started(), stopped(3)).status == "failed", "stopped before any segment started"


def test_files_lost_fails_and_a_later_segment_of_another_recording_is_not_ours() -> None:
    lost = ncs("s1", 90, {"msgName": "download_failed", "fileName": "d/s1.m3u8"}, at=70)
    events = [started(), segment("s1", 1), stopped(60), stop_result("s1", ["d/s1.m3u8"], 61), lost]
    v = view(*events)
    assert (v.status, v.reason) == ("failed", "files_lost")
    assert view(*events[:4], segment("s9", 500)).sids == ("s1",)


def test_late_old_storage_event_does_not_undo_a_newer_one() -> None:
    events = [started(), segment("s1", 1), stopped(10), stop_result("s1", ["d/s1.m3u8"], 11),
              stored("d/s1.m3u8", 5, sequencer="0A"),
              stored("d/s1.m3u8", 0, sequencer="09", type_="storage.object_removed")]
    assert view(*events).status == "ready"
    removed = stored("d/s1.m3u8", 0, sequencer="0B", type_="storage.object_removed")
    assert view(*events, removed).status == "processing"


def test_stopping_the_room_through_the_rooms_api_stops_the_recording() -> None:
    spec = {"state": "stopped", "provider": "agora", "channel": "standup"}
    desired = ev("api", "room.desired", {"tenant": "acme", "name": "standup", "spec": spec,
                                         "channel_key": "agora/standup"}, room=ROOM, at=20)
    v = view(started(), desired)
    assert v.stopped_ms == int((T0 + timedelta(seconds=20)).timestamp() * 1000)


def test_archive_delete_and_fail_are_recorded() -> None:
    events = [started(), segment("s1", 1), stopped(10), stop_result("s1", ["d/s1.m3u8"], 11),
              stored("d/s1.m3u8", 5)]
    archived = ev("api", "recording.archived", {"recording_id": "rec1", "keys": ["d/s1.m3u8"]},
                  room=ROOM, at=30)
    deleted = ev("api", "recording.deleted", {"recording_id": "rec1"}, room=ROOM, at=40)
    v = view(*events, archived, deleted)
    assert v.status == "archived" and v.deleted_ms and v.archived_ms


def test_a_cloudflare_recording_gets_its_file_from_the_uploaded_webhook() -> None:
    """RealtimeKit names the file in ``recording.statusUpdate`` UPLOADED
    (docs/providers/cloudflare.md#22-payloads):
    the catalog must learn it there, since nothing queries a recording once it is stopped."""
    from datetime import UTC, datetime

    from reconcilers.catalog import RecordingSegments
    from reconcilers.events import Event

    def hook(seq: int, status: str) -> Event:
        body = {
            "event": "recording.statusUpdate",
            "recording": {"id": "rec-1", "status": status, "meetingId": "m-1",
                          "outputFileName": "weekly-sync.mp4", "fileSize": "2044680"},
            "meeting": {"id": "m-1", "sessionId": "s-1"},
        }
        return Event(seq, "cloudflare", f"k{seq}", "cloudflare.recording.statusUpdate", body,
                     "m-1", "rec-1", datetime.now(UTC))

    segments = RecordingSegments()
    (key,) = segments.keys(hook(1, "RECORDING"))
    row = segments.apply(None, hook(1, "RECORDING"))
    assert row is not None and key == "cloudflare:rec-1" and not row.data["files"]
    row = segments.apply(row, hook(2, "UPLOADED"))
    assert row is not None and list(row.data["files"]) == ["weekly-sync.mp4"]
    assert row.data["upload"] == "uploaded" and row.data["ended_ms"]
    assert row.room == "cloudflare/m-1"
