"""Spec changes reach a running session (issue 21): plan tables for each case.

Live options go through an update; a change of mode, storage or other options rolls over to a
new segment make-before-break (the old one stops only once the new one records) unless the
spec says ``rollout: "restart"``; a change nothing runs differently needs no action."""

from __future__ import annotations

from reconcilers.observed import Desired, Observed, SegmentObs, SessionObs
from reconcilers.plan import Plan, PlanConfig, live_hash, plan, spec_drift
from reconcilers.spec import RecordingSpec

CFG = PlanConfig()
ROOM = "t1/room-a"
NOW = 1_800_000_000_000
BASE = RecordingSpec(channel=ROOM, options={"recordingConfig": {"maxIdleTime": 30}})
UID0 = CFG.uids.recorder_uid(ROOM, 0)
UID1 = CFG.uids.recorder_uid(ROOM, 1)


def desired(generation: int = 2, **changes: object) -> Desired:
    spec = RecordingSpec(**{**BASE.to_json(), **changes})  # type: ignore[arg-type]
    return Desired(spec, generation=generation, room=ROOM)


def started_with(spec: RecordingSpec = BASE, state: str = "recording", sid: str = "sid0",
                 segment: int = 0, uid: str = UID0) -> SessionObs:
    return SessionObs(
        sid, uid, state, True, segment, NOW - 59_000,  # type: ignore[arg-type]
        last_progress_ms=NOW - 1_000, last_query_ms=NOW - 1_000,
        applied_live=live_hash(spec.live_options()), generation=1, applied_mode=spec.mode,
        applied_storage=spec.storage, applied_restart=spec.restart_fingerprint(),
    )


def running(session: SessionObs) -> Observed:
    seg = SegmentObs(0, UID0, "res", NOW - 60_000, NOW - 59_000, None, "sid0", NOW - 59_000)
    return Observed((seg,), (session,))


def kinds(p: Plan) -> list[str]:
    return [a.kind for a in p.actions]


def test_a_change_nothing_runs_differently_needs_no_action() -> None:
    p = plan(desired(recovery="aggressive"), running(started_with()), NOW, CFG)
    assert kinds(p) == []


def test_live_options_are_an_update_not_a_new_segment() -> None:
    live = {**BASE.options, "layout": {"mixedVideoLayout": 1}}
    p = plan(desired(options=live), running(started_with()), NOW, CFG)
    assert kinds(p) == ["update"] and p.actions[0].options == {"layout": {"mixedVideoLayout": 1}}


def test_a_mode_change_rolls_over_to_a_new_segment_with_the_spare_uid() -> None:
    d = desired(mode="individual")
    assert spec_drift(d.spec, started_with()) == ("mode",)
    p = plan(d, running(started_with()), NOW, CFG)
    assert kinds(p) == ["reserve"], "the old session is not stopped yet"
    (reserve,) = p.actions
    assert (reserve.segment, reserve.uid) == (1, UID1)
    assert reserve.reason.startswith("rollover") and "mode mix -> individual" in reserve.reason


def test_storage_and_restart_options_roll_over_too() -> None:
    for change, field in (({"storage": "archive"}, "storage"),
                          ({"options": {"recordingConfig": {"maxIdleTime": 300}}}, "options")):
        d = desired(**change)
        assert spec_drift(d.spec, started_with()) == (field,)
        p = plan(d, running(started_with()), NOW, CFG)
        assert kinds(p) == ["reserve"] and p.actions[0].reason.startswith("rollover"), change


def test_mid_rollover_the_old_segment_records_until_the_new_one_does() -> None:
    d = desired(mode="individual")
    old = started_with()
    new_seg = SegmentObs(1, UID1, "res1", NOW - 3_000, NOW - 2_000, None, "sid1", NOW - 2_000)
    for state in ("starting", "recording"):
        new = started_with(d.spec, state=state, sid="sid1", segment=1, uid=UID1)
        o = Observed((*running(old).segments, new_seg), (old, new))
        p = plan(d, o, NOW, CFG)
        if state == "starting":
            assert "stop" not in kinds(p), "break only after make"
        else:
            stops = [a for a in p.actions if a.kind == "stop"]
            assert [a.sid for a in stops] == ["sid0"], "the new one records: stop the old"


def test_rollout_restart_stops_then_starts() -> None:
    d = desired(mode="individual", rollout="restart")
    p = plan(d, running(started_with()), NOW, CFG)
    assert kinds(p) == ["stop", "reserve"]
    assert p.actions[0].sid == "sid0" and p.actions[1].reason.startswith("restart")


def test_a_session_whose_start_spec_is_unknown_is_left_alone() -> None:
    unknown = SessionObs("sid0", UID0, "recording", True, 0, NOW - 59_000,  # type: ignore[arg-type]
                         last_progress_ms=NOW - 1_000, last_query_ms=NOW - 1_000)
    assert kinds(plan(desired(mode="individual"), running(unknown), NOW, CFG)) == []


def two_back() -> tuple[SessionObs, SessionObs, tuple[SegmentObs, ...]]:
    """Segment 1 (the spare uid, its reported uid changed by a failover) still records beside
    segment 2, the current one: its stop has not happened yet."""
    seg1 = SegmentObs(1, UID1, "res1", NOW - 30_000, NOW - 29_000, None, "sid1", NOW - 29_000)
    seg2 = SegmentObs(2, UID0, "res2", NOW - 20_000, NOW - 19_000, None, "sid2", NOW - 19_000)
    old = SessionObs("sid1", "2473417693", "recording", True, 1, NOW - 29_000,  # type: ignore[arg-type]
                     last_progress_ms=NOW - 1_000, last_query_ms=NOW - 1_000)
    cur = started_with(sid="sid2", segment=2, uid=UID0)
    return old, cur, (seg1, seg2)


def test_seed_16_a_rollover_waits_until_its_spare_uid_is_free() -> None:
    """Chaos seed 16 with spec changes: a rollover reserved segment 3 on the uid segment 1
    still held; Agora answered 53 and two recorders ran for good. Now segment 1 is stopped
    first, and segment 3 starts once it is gone."""
    old, cur, segments = two_back()
    d = desired(mode="individual")
    p = plan(d, Observed(segments, (old, cur)), NOW, CFG)
    assert "reserve" not in kinds(p)
    assert [a.sid for a in p.actions if a.kind == "stop"] == ["sid1"]
    gone = SessionObs("sid1", "2473417693", "ended", True, 1, NOW - 29_000)  # type: ignore[arg-type]
    p = plan(d, Observed(segments, (gone, cur)), NOW, CFG)
    assert kinds(p) == ["reserve"] and (p.actions[0].segment, p.actions[0].uid) == (3, UID1)


def test_seed_16_a_segment_refused_as_already_recording_frees_its_uid_first() -> None:
    old, cur, segments = two_back()
    stuck = SegmentObs(3, UID1, "res3", NOW - 100_000, NOW - 99_000, "already_recording",
                       attempts=1)
    p = plan(desired(mode="individual"), Observed((*segments, stuck), (old, cur)), NOW, CFG)
    assert "reserve" not in kinds(p) and "sid1" in [a.sid for a in p.actions if a.kind == "stop"]
