"""The projections fold the log into rooms, sessions and presence, deterministically."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from reconcilers.events import Event, Fold
from reconcilers.identity import UidRange
from reconcilers.observed import observe
from reconcilers.projections import PROJECTIONS

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ROOM = "acme/standup"
UIDS = UidRange()
UID0 = UIDS.recorder_uid(ROOM, 0)
_seq = itertools.count(1)


def ev(
    source: str,
    type_: str,
    payload: dict[str, Any],
    room: str | None = None,
    session: str | None = None,
    at: float = 0.0,
) -> Event:
    return Event(
        next(_seq),
        source,
        f"k{next(_seq)}",
        type_,
        payload,
        room,
        session,  # type: ignore[arg-type]
        T0 + timedelta(seconds=at),
    )


def ncs(
    event_type: int,
    details: dict[str, Any],
    sid: str = "sid0",
    uid: str = UID0,
    seq: int = 0,
    at: float = 0.0,
) -> Event:
    payload = {
        "noticeId": f"n{event_type}-{seq}",
        "productId": 3,
        "eventType": event_type,
        "notifyMs": 0,
        "payload": {
            "cname": "standup",
            "uid": uid,
            "sid": sid,
            "sequence": seq,
            "sendts": 0,
            "serviceType": 0,
            "details": details,
        },
    }
    from reconcilers.providers.agora.notifications import parse_notification

    n = parse_notification(payload)
    return ev("agora", n.type, payload, room="standup", session=sid, at=at)


def rtc(
    event_type: int,
    uid: str,
    client_seq: int,
    platform: int = 7,
    client_type: int | None = None,
    at: float = 0.0,
) -> Event:
    p: dict[str, Any] = {
        "channelName": "standup",
        "uid": int(uid),
        "platform": platform,
        "clientSeq": client_seq,
        "ts": 1,
    }
    if client_type is not None:
        p["clientType"] = client_type
    body = {
        "noticeId": f"r{event_type}-{uid}-{client_seq}",
        "productId": 1,
        "eventType": event_type,
        "notifyMs": 0,
        "payload": p,
    }
    from reconcilers.providers.agora.notifications import parse_notification

    return ev("agora", parse_notification(body).type, body, room="standup", at=at)


def desired(generation_bump: int = 1, state: str = "recording") -> Event:
    spec = {
        "state": state,
        "provider": "agora",
        "mode": "mix",
        "channel": "standup",
        "storage": "default",
        "options": {},
    }
    return ev(
        "api",
        "room.desired",
        {"tenant": "acme", "name": "standup", "spec": spec, "channel_key": "agora/standup"},
        room=ROOM,
    )


def fold(*events: Event) -> Fold:
    f = Fold(PROJECTIONS)
    for e in events:
        f.apply(e)
    return f


def test_room_generation_increases_on_every_change_and_delete_keeps_the_row() -> None:
    f = fold(desired(), desired(state="stopped"), ev("api", "room.deleted", {}, room=ROOM))
    row = f.rows[("rooms", ROOM)]
    assert row.data["generation"] == 3 and row.data["deleted"] is True
    assert row.room == "agora/standup"


def test_reconciler_intents_and_results_build_segments() -> None:
    base = {"segment": 0, "uid": UID0, "generation": 1, "provider": "agora"}
    f = fold(
        desired(),
        ev("reconciler", "intent.reserve", base, room=ROOM),
        ev("reconciler", "result.reserve", {**base, "resource_id": "R"}, room=ROOM, at=1),
        ev("reconciler", "intent.start", {**base, "resource_id": "R"}, room=ROOM, at=2),
        ev(
            "reconciler",
            "result.start",
            {**base, "resource_id": "R", "sid": "sid0", "channel": "standup", "mode": "mix"},
            room=ROOM,
            at=3,
        ),
    )
    seg = f.rows[("rooms", ROOM)].data["segments"]["0"]
    assert seg["resource_id"] == "R" and seg["sid"] == "sid0"
    session = f.rows[("sessions", "agora:sid0")]
    assert session.room == "agora/standup" and session.data["state"] == "starting"
    assert session.data["resource_id"] == "R" and session.data["mode"] == "mix"


def test_notifications_track_progress_idle_exit_and_out_of_order_arrival() -> None:
    f = fold(
        ncs(40, {"msgName": "recorder_started", "status": 0}, seq=0, at=1),
        ncs(42, {"msgName": "recorder_slice_start", "startUtcMs": 1}, seq=1, at=2),
        ncs(41, {"msgName": "recorder_leave", "leaveCode": 4}, seq=3, at=40),
        ncs(11, {"msgName": "session_exit", "exitStatus": 0}, seq=4, at=41),
        ncs(33, {"msgName": "uploading_progress", "progress": 5000}, seq=2, at=30),  # late
    )
    data = f.rows[("sessions", "agora:sid0")].data
    assert data["state"] == "ended", "a late progress event does not resurrect an exited session"
    assert data["exit_reason"] == "no_users"
    assert data["last_sequence"] == 4


def test_failover_moves_the_session_to_a_new_uid_and_keeps_it_ours() -> None:
    f = fold(
        ncs(40, {"msgName": "recorder_started", "status": 0}, seq=0),
        ncs(12, {"msgName": "session_failover", "newUid": 777}, seq=1, uid="777", at=5),
    )
    data = f.rows[("sessions", "agora:sid0")].data
    assert data["uid"] == "777" and data["failovers"] == 1 and data["recorder_uid"] == UID0
    _, observed = observe(None, [data], None, UIDS)
    assert observed.sessions[0].ours


def test_presence_orders_by_client_seq_and_ignores_the_cloud_recorder() -> None:
    f = fold(
        rtc(107, "11", 1),
        rtc(107, UID0, 1, platform=6, client_type=10),
        rtc(108, "11", 3, at=10),
        rtc(107, "11", 2, at=11),  # late join, older clientSeq: ignored
    )
    row = f.rows[("presence", "agora/standup")]
    assert {k: {f: u[f] for f in ("seq", "present")} for k, u in row.data["users"].items()} == {
        "11": {"seq": 3, "present": False}
    }
    _, observed = observe(None, [], row.data, UIDS)
    assert observed.channel_empty is True


def test_channel_destroy_empties_the_channel() -> None:
    body = {
        "noticeId": "d",
        "productId": 1,
        "eventType": 102,
        "notifyMs": 0,
        "payload": {"channelName": "standup", "ts": 5, "lastUid": 11},
    }
    f = fold(
        rtc(107, "11", 1),
        rtc(107, "12", 1),
        ev("agora", "agora.channel_destroy", body, room="standup"),
    )
    _, observed = observe(None, [], f.rows[("presence", "agora/standup")].data, UIDS)
    assert observed.channel_empty is True


def test_a_stop_of_a_session_with_no_segment_leaves_the_room_row_alone() -> None:
    """Seen when a room stops a recorder it did not start (own_channel): the payload's segment
    is None, and folding it as segment "None" failed the whole group commit."""
    from datetime import UTC, datetime

    from reconcilers.events import Event, Row
    from reconcilers.projections import Rooms

    row = Row("rooms", "acme/r", "agora/r", {"generation": 1, "segments": {}}, 1)
    stop = Event(2, "reconciler", "k", "intent.stop", {"sid": "s", "segment": None},
                 "acme/r", "s", datetime.now(UTC))
    after = Rooms().apply(row, stop)
    assert after is not None and after.data["segments"] == {}


def test_a_refused_stop_is_kept_apart_from_a_failed_one_and_from_a_stop() -> None:
    """A transient failure is tried again at once; a refused stop (Agora's 1003 once left a
    recorder running for good: issue 20) is not a stop either: it is counted, and ``plan``
    asks again after a backoff."""
    from datetime import UTC, datetime

    from reconcilers.events import Event
    from reconcilers.projections import Sessions

    def stop(seq: int, kind: str, outcome: str | None) -> Event:
        payload = {"sid": "s1", "provider": "agora", "segment": None, "outcome": outcome}
        return Event(seq, "reconciler", f"k{seq}", kind, payload, "channel:agora/c", "s1",
                     datetime.now(UTC))

    folds = Sessions()
    row = folds.apply(None, stop(1, "intent.stop", None))
    row = folds.apply(row, stop(2, "result.stop", "retryable"))
    assert row is not None and not row.data["stop_requested"], "a transient failure: again"
    row = folds.apply(row, stop(3, "intent.stop", None))
    row = folds.apply(row, stop(4, "result.stop", "rejected"))
    assert row is not None and row.data["stop_rejected"] and row.data["stop_refusals"] == 1
    assert not row.data["stop_requested"], "refused is not stopped: asked again, later"
    assert row.data["stop_attempts"] == 2 and row.data["stop_intent_ms"] is None


def test_seed_49_a_channel_created_after_its_join_was_lost_is_not_empty() -> None:
    """Chaos seed 49: a user's join event was lost but 101 (channel created: someone joined)
    arrived; presence said empty, the room waited for a join that had already happened."""
    from datetime import UTC, datetime

    from reconcilers.events import Event
    from reconcilers.identity import UidRange
    from reconcilers.observed import observe
    from reconcilers.projections import Presence

    def rtc(seq: int, event_type: int, **payload: object) -> Event:
        body = {"noticeId": f"n{seq}", "productId": 1, "eventType": event_type,
                "notifyMs": seq, "payload": {"channelName": "room-0", "ts": seq, **payload}}
        type_ = {101: "agora.channel_create", 102: "agora.channel_destroy",
                 107: "agora.user_join", 108: "agora.user_leave"}[event_type]
        return Event(seq, "agora", f"n{seq}", type_, body, "room-0", None, datetime.now(UTC))

    presence = Presence()
    row = None
    for event in (rtc(1, 101), rtc(2, 107, uid=1096, clientSeq=1, platform=7),
                  rtc(3, 108, uid=1096, clientSeq=2, platform=7, reason=1), rtc(4, 102)):
        row = presence.apply(row, event) or row
    assert row is not None
    assert observe(None, [], row.data, UidRange())[1].channel_empty is True
    row = presence.apply(row, rtc(5, 101))  # someone joined; their 107 never came
    assert row is not None
    assert observe(None, [], row.data, UidRange())[1].channel_empty is False


def test_seed_49_a_late_channel_destroy_does_not_empty_a_channel_joined_since() -> None:
    """Chaos seed 49 again: a 102 (ts 298) delayed behind a later 101 + join (ts 300)."""
    from datetime import UTC, datetime

    from reconcilers.events import Event
    from reconcilers.identity import UidRange
    from reconcilers.observed import observe
    from reconcilers.projections import Presence

    def rtc(seq: int, event_type: int, ts: int, **payload: object) -> Event:
        body = {"noticeId": f"n{seq}", "productId": 1, "eventType": event_type,
                "notifyMs": seq, "payload": {"channelName": "room-0", "ts": ts, **payload}}
        type_ = {101: "agora.channel_create", 102: "agora.channel_destroy",
                 107: "agora.user_join"}[event_type]
        return Event(seq, "agora", f"n{seq}", type_, body, "room-0", None, datetime.now(UTC))

    presence, row = Presence(), None
    for event in (rtc(1, 101, 300), rtc(2, 107, 300, uid=7935, clientSeq=5, platform=7),
                  rtc(3, 102, 298, lastUid=4011)):
        row = presence.apply(row, event) or row
    assert row is not None
    assert observe(None, [], row.data, UidRange())[1].channel_empty is False


def test_a_late_status_update_never_moves_a_session_back() -> None:
    """Seen in the 10,000-room benchmark: status 2 arriving after status 4 made a recording
    session look unstarted, so it was queried again and again, then stopped as stalled."""
    from datetime import UTC, datetime

    from reconcilers.events import Event
    from reconcilers.projections import Sessions

    def status(seq: int, value: int) -> Event:
        body = {"noticeId": f"n{seq}", "productId": 3, "eventType": 3, "notifyMs": seq,
                "payload": {"cname": "c", "uid": "4000000001", "sid": "s1", "sequence": seq,
                            "sendts": seq, "serviceType": 0,
                            "details": {"msgName": "cloud_recording_status_update",
                                        "status": value, "recordingMode": 1}}}
        return Event(seq, "agora", f"n{seq}", "agora.cloud_recording_status_update", body,
                     "c", "s1", datetime.now(UTC))

    folds = Sessions()
    row = folds.apply(None, status(1, 4))
    row = folds.apply(row, status(2, 2))
    assert row is not None and row.data["state"] == "recording"
    row = folds.apply(row, status(3, 6))
    assert row is not None and row.data["state"] == "stopping"


def checked(users: list[str], at: float) -> Event:
    """The reconciler's record of the provider's answer to "who is in the channel?"."""
    payload = {"provider": "agora", "channel_key": "agora/standup", "exists": bool(users),
               "users": users}
    return ev("reconciler", "observed.presence", payload, room=ROOM, at=at)


def test_seed_165_the_providers_user_list_is_a_snapshot_of_presence() -> None:
    """A join lost by NCS: the channel looked empty until the user list said otherwise. The
    snapshot marks its users present and everyone else gone; a late 102 stamped before it
    empties nothing, and a later leave (a higher clientSeq) still counts."""
    destroy = {"noticeId": "d", "productId": 1, "eventType": 102, "notifyMs": 0,
               "payload": {"channelName": "standup", "ts": 1, "lastUid": 11}}
    f = fold(rtc(107, "11", 1), rtc(108, "11", 2, at=5),
             ev("agora", "agora.channel_destroy", destroy, room="standup", at=5))
    row = f.rows[("presence", "agora/standup")]
    assert observe(None, [], row.data, UIDS)[1].channel_empty is True

    f.apply(checked(["12"], at=70))
    row = f.rows[("presence", "agora/standup")]
    _, seen = observe(None, [], row.data, UIDS)
    assert seen.channel_empty is False
    assert seen.presence_seen_ms == int((T0 + timedelta(seconds=70)).timestamp() * 1000)
    assert {uid for uid, u in row.data["users"].items() if u["present"]} == {"12"}

    f.apply(ev("agora", "agora.channel_destroy", destroy, room="standup", at=71))  # late, ts 1
    assert observe(None, [], f.rows[("presence", "agora/standup")].data, UIDS)[1].channel_empty \
        is False
    f.apply(rtc(108, "12", 4, at=80))
    assert observe(None, [], f.rows[("presence", "agora/standup")].data, UIDS)[1].channel_empty \
        is True

    f.apply(checked([], at=140))  # asked again: nobody
    assert observe(None, [], f.rows[("presence", "agora/standup")].data, UIDS)[1].channel_empty \
        is True


def test_an_ended_session_is_filed_apart_from_its_channels_live_ones() -> None:
    """A pass reads its channel's live sessions by the channel's index: ended ones, which a
    channel gathers by the thousand, are filed under ``closed_index`` (read by key if needed)."""
    from reconcilers.projections import closed_index

    f = fold(ncs(40, {"msgName": "recorder_started", "status": 0}, sid="a", seq=1))
    assert f.rows[("sessions", "agora:a")].room == "agora/standup"
    f.apply(ncs(11, {"msgName": "session_exit", "exitStatus": 0}, sid="a", seq=2))
    f.apply(ncs(43, {"msgName": "recorder_audio_stream_state_changed"}, sid="a", seq=3))
    row = f.rows[("sessions", "agora:a")]
    assert row.data["state"] == "ended" and row.room == closed_index("agora/standup")


def test_a_room_keeps_a_summary_of_its_older_started_segments() -> None:
    from reconcilers.projections import SEGMENT_SUMMARY

    events = [desired()]
    for segment in range(3):
        uid = UIDS.recorder_uid(ROOM, segment)
        base = {"segment": segment, "uid": uid, "generation": 1, "provider": "agora"}
        events += [
            ev("reconciler", "intent.reserve", base, room=ROOM, at=segment),
            ev("reconciler", "result.reserve", {**base, "resource_id": f"r{segment}"}, room=ROOM),
            ev("reconciler", "intent.start", {**base, "resource_id": f"r{segment}"}, room=ROOM),
            ev("reconciler", "result.start", {**base, "sid": f"s{segment}"}, room=ROOM),
        ]
    segments = fold(*events).rows[("rooms", ROOM)].data["segments"]
    assert set(segments["0"]) == set(segments["1"]) == set(SEGMENT_SUMMARY)
    assert segments["1"]["sid"] == "s1" and segments["2"]["resource_id"] == "r2"
    _, observed = observe(fold(*events).rows[("rooms", ROOM)].data, [], None, UIDS)
    assert [s.sid for s in observed.segments] == ["s0", "s1", "s2"]
    assert observed.current is not None and observed.current.resource_id == "r2"


def test_presence_forgets_users_who_left_long_ago_and_ignores_their_late_events() -> None:
    from reconcilers.folding import FORGET_LEFT_MS

    later = FORGET_LEFT_MS / 1000 + 20
    f = fold(rtc(107, "11", 1), rtc(108, "11", 2, at=10), rtc(107, "12", 1, at=later))
    users = f.rows[("presence", "agora/standup")].data["users"]
    assert set(users) == {"12"}  # 11 left over FORGET_LEFT_MS ago
    f.apply(rtc(107, "11", 1, at=later + 1))  # a late copy of 11's join (ts no newer)
    users = f.rows[("presence", "agora/standup")].data["users"]
    assert set(users) == {"12"} and users["12"]["present"]


def test_the_conditions_index_agrees_with_the_views_conditions() -> None:
    """``holding`` (what the index files) and the API view's conditions are the same rules."""
    from reconcilers.conditions import holding
    from reconcilers.engine import RoomState
    from service.api.views import room_view

    uid = UIDS.recorder_uid(ROOM, 0)
    base = {"segment": 0, "uid": uid, "generation": 1, "provider": "agora"}
    started = ev("reconciler", "result.start", {**base, "sid": "sid0"}, room=ROOM)
    reserve = ev("reconciler", "intent.reserve", base, room=ROOM)
    rejected = ev("reconciler", "result.start", {**base, "outcome": "rejected", "message": "no"},
                  room=ROOM)
    cases = [
        [desired()],
        [desired(), reserve, started],
        [desired(), reserve, started, ncs(40, {"msgName": "recorder_started", "status": 0})],
        [desired(), reserve, started, ncs(40, {"msgName": "recorder_started", "status": 0}),
         ncs(11, {"msgName": "session_exit", "exitStatus": 0}, seq=1)],
        [desired(), reserve, rejected],
        [desired(state="stopped")],
        [desired(), rtc(107, "11", 1), rtc(108, "11", 2)],
    ]
    seen = set()
    for events in cases:
        f = fold(*events)
        room = f.rows[("rooms", ROOM)]
        sessions = [r.data for (p, _), r in f.rows.items() if p == "sessions"]
        presence = f.rows.get(("presence", "agora/standup"))
        d, o = observe(room.data, sessions, presence.data if presence else None, UIDS)
        view = room_view(RoomState(ROOM, d, o, {}, room))
        from_view = tuple(c.type for c in view.conditions if c.status == "True")
        assert holding(d, o) == from_view, events
        seen.add(from_view)
    assert {("Recording",), ("Progressing",), ("Degraded",), ()} <= seen


def test_an_uploader_restarting_in_failover_keeps_the_404_clock_running() -> None:
    """Found by ``make soak`` (issue 20): a recorder failing over answered 404; its uploader
    started again (event 30) before its recorder did, and that cleared when the 404 began while
    the session stayed missing. The plan took the missing session with no 404 time for one gone
    after the failover window, started another, and two recorders of ours recorded at once
    when the first came back."""
    from reconcilers.projections import Sessions

    folds = Sessions()
    start = ev("reconciler", "result.start", {"sid": "sid0", "uid": UID0, "segment": 0,
                                               "provider": "agora"}, room=ROOM)
    row = folds.apply(None, start)
    query = ev("reconciler", "observed.query",
               {"sid": "sid0", "provider": "agora", "not_found": True}, room=ROOM, at=10)
    row = folds.apply(row, query)
    assert row is not None and row.data["state"] == "missing"
    since = row.data["not_found_since_ms"]
    row = folds.apply(row, ncs(30, {"msgName": "uploader_started", "status": 0}, seq=5, at=11))
    assert row is not None and row.data["state"] == "missing"
    assert row.data["not_found_since_ms"] == since, "still missing since the 404"
    row = folds.apply(row, ncs(40, {"msgName": "recorder_started", "status": 0}, seq=6, at=12))
    assert row is not None and row.data["state"] == "recording"
    assert row.data["not_found_since_ms"] is None
