"""plan(desired, observed, now): tables for each documented situation, and properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reconcilers.budget import QueryBudget
from reconcilers.identity import UidRange
from reconcilers.observed import Desired, Observed, SegmentObs, SessionObs
from reconcilers.plan import Plan, PlanConfig, live_hash, plan, query_slot_wait
from reconcilers.spec import RecordingSpec

CFG = PlanConfig()
ROOM = "t1/room-a"
NOW = 1_800_000_000_000
SPEC = RecordingSpec(channel=ROOM)
UID0 = CFG.uids.recorder_uid(ROOM, 0)
UID1 = CFG.uids.recorder_uid(ROOM, 1)


def desired(**changes: object) -> Desired:
    spec = RecordingSpec(**{**SPEC.to_json(), **changes})  # type: ignore[arg-type]
    return Desired(spec, generation=1)


def running(state: str = "recording", **kw: object) -> Observed:
    seg = SegmentObs(0, UID0, "res", NOW - 60_000, NOW - 59_000, None, "sid0", NOW - 59_000)
    sess = SessionObs(
        "sid0",
        UID0,
        state,
        True,
        0,
        NOW - 59_000,  # type: ignore[arg-type]
        last_progress_ms=kw.pop("progress", NOW - 1_000),  # type: ignore[arg-type]
        last_query_ms=kw.pop("queried", NOW - 1_000),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    return Observed((seg,), (sess,))


def kinds(p: Plan) -> list[str]:
    return [a.kind for a in p.actions]


def test_nothing_running_and_recording_desired_reserves_segment_zero() -> None:
    p = plan(desired(), Observed(), NOW, CFG)
    assert kinds(p) == ["reserve"]
    assert p.actions[0].segment == 0 and p.actions[0].uid == UID0


def test_reserved_resource_is_started() -> None:
    o = Observed((SegmentObs(0, UID0, "res", NOW - 1_000),))
    p = plan(desired(), o, NOW, CFG)
    assert kinds(p) == ["start"] and p.actions[0].resource_id == "res"


def test_expired_resource_is_reserved_again_for_the_same_segment() -> None:
    o = Observed((SegmentObs(0, UID0, "res", NOW - 250_000, attempts=1),))
    p = plan(desired(), o, NOW, CFG)
    assert kinds(p) == ["reserve"] and (p.actions[0].segment, p.actions[0].attempt) == (0, 1)


def test_channel_known_empty_waits_for_a_join() -> None:
    """Known empty since 10 s ago: no call, look again once that knowledge is an interval old."""
    o = Observed(channel_empty=True, presence_seen_ms=NOW - 10_000)
    p = plan(desired(), o, NOW, CFG)
    assert kinds(p) == [] and p.requeue_after == CFG.query_interval - 10


def test_an_empty_channel_is_checked_with_the_provider_once_an_interval() -> None:
    """NCS may lose the join: after an interval of silence, ask who is in the channel."""
    for seen in (NOW - 60_000, NOW - 3_600_000, None):
        o = Observed(channel_empty=True, presence_seen_ms=seen)
        p = plan(desired(), o, NOW, CFG)
        assert kinds(p) == ["presence"] and p.requeue_after == 1.0
    answered = Observed(channel_empty=False, presence_seen_ms=NOW - 500)
    assert kinds(plan(desired(), answered, NOW, CFG)) == ["reserve"]


def test_recorder_left_for_no_users_is_not_restarted_in_a_hot_loop() -> None:
    o = running("ended", exit_reason="no_users")
    p = plan(desired(), o, NOW, CFG)  # no RTC events at all: ask, never start blind
    assert kinds(p) == ["presence"] and p.requeue_after == 1.0
    asked = Observed(o.segments, o.sessions, channel_empty=True, presence_seen_ms=NOW - 500)
    p = plan(desired(), asked, NOW, CFG)
    assert kinds(p) == [] and p.requeue_after == CFG.query_interval - 0.5
    joined = Observed(o.segments, o.sessions, channel_empty=False, presence_seen_ms=NOW - 500)
    assert kinds(plan(desired(), joined, NOW, CFG)) == ["reserve"]


def test_healthy_session_requeues_for_its_query_slot() -> None:
    p = plan(desired(), running(), NOW, CFG)
    assert kinds(p) == []
    wait = query_slot_wait("sid0", NOW, 1.0, CFG.query_interval)
    assert p.requeue_after == wait and 29.0 <= wait <= 89.0  # news 1 s ago: 30-90 s after it
    for early_ms in (900, 0):  # a timer may fire a little early
        p = plan(desired(), running(), NOW + round(wait * 1000) - early_ms, CFG)
        assert kinds(p) == ["query"] and p.requeue_after == CFG.query_interval
    p = plan(desired(), running(), NOW + round(wait * 1000) - 1_500, CFG)
    assert kinds(p) == [] and p.requeue_after is not None and 1.0 <= p.requeue_after < 1.6


def test_stale_observation_is_refreshed_by_query() -> None:
    p = plan(desired(), running(queried=NOW - 91_000, progress=NOW - 91_000), NOW, CFG)
    assert kinds(p) == ["query"]


@given(
    key=st.text(min_size=1, max_size=20),
    interval=st.floats(1.0, 3600.0),
    news_ms=st.integers(NOW - 10_000_000, NOW),
)
def test_a_query_slot_comes_half_to_one_and_a_half_intervals_after_the_news(
    key: str, interval: float, news_ms: int
) -> None:
    fresh = (NOW - news_ms) / 1000
    wait = query_slot_wait(key, NOW, fresh, interval)
    after_news = fresh + wait
    assert interval / 2 - 1e-6 <= after_news < interval * 1.5 + 1e-6
    if wait > 0:  # the slot is the session's own phase: a time-independent grid
        slot_ms = NOW + wait * 1000
        phase = QueryBudget.spread(key, interval) * 1000
        offset = (slot_ms - phase) % (interval * 1000)
        assert min(offset, interval * 1000 - offset) < 1e-3 * interval


@given(key=st.text(min_size=1, max_size=20), late_ms=st.integers(0, 20_000))
def test_a_steady_session_is_queried_once_an_interval(key: str, late_ms: int) -> None:
    """Queried at its slot (or up to a third of an interval late), the next slot is the
    same phase one interval on, not two."""
    interval = 60.0
    slot_ms = NOW + query_slot_wait(key, NOW, 100.0, interval) * 1000
    queried_ms = slot_ms + late_ms
    nxt = query_slot_wait(key, int(queried_ms), 0.0, interval)
    assert abs(queried_ms + nxt * 1000 - (slot_ms + interval * 1000)) < 1.0


def test_queries_of_many_sessions_spread_over_the_interval() -> None:
    """A burst: 6,000 sessions all overdue at once (a restart). Their queries fall evenly over
    the next interval instead of all at once."""
    waits = [query_slot_wait(f"sid-{i}", NOW, 600.0, 60.0) for i in range(6000)]
    assert all(w <= 0 for w in waits)  # all due at once...
    nexts = [query_slot_wait(f"sid-{i}", NOW, 0.0, 60.0) for i in range(6000)]
    per_second = [0] * 90
    for w in nexts:  # ...and once queried, the next round is spread: ~100 a second
        per_second[int(w)] += 1
    busiest = max(per_second)
    assert busiest < 2 * 6000 / 60


def test_fresh_notifications_make_a_query_unnecessary() -> None:
    p = plan(desired(), running(queried=NOW - 500_000, progress=NOW - 2_000), NOW, CFG)
    assert kinds(p) == []


def test_live_option_change_is_an_update_not_a_restart() -> None:
    live = {"streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["1"]}}}
    o = running(applied_live=live_hash({"streamSubscribe": {}}))
    p = plan(desired(options=live), o, NOW, CFG)
    assert kinds(p) == ["update"] and p.actions[0].options == live


def test_segment_reaching_its_limit_rolls_over_make_before_break() -> None:
    d = desired(max_segment_seconds=350)
    p = plan(d, running(), NOW, CFG)
    assert kinds(p) == ["reserve"] and p.actions[0].uid == UID1 != UID0
    # Next pass: the new segment is starting, the old one keeps recording.
    o = running()
    pending = Observed((*o.segments, SegmentObs(1, UID1, "res1", NOW - 100)), o.sessions)
    assert kinds(plan(d, pending, NOW, CFG)) == ["start"]
    # Once the new one records, the old one is stopped.
    new_seg = SegmentObs(1, UID1, "res1", NOW - 100, NOW - 90, None, "sid1", NOW - 90)
    new_sess = SessionObs("sid1", UID1, "recording", True, 1, NOW - 90, NOW - 10, NOW - 10)
    both = Observed((*o.segments, new_seg), (*o.sessions, new_sess))
    p = plan(desired(max_segment_seconds=3500), both, NOW, CFG)
    assert kinds(p) == ["stop"] and p.actions[0].sid == "sid0"


def test_stalled_session_is_recovered_into_a_new_segment() -> None:
    p = plan(desired(), running(progress=NOW - 400_000, queried=NOW - 10_000), NOW, CFG)
    assert kinds(p) == ["stop", "reserve"]
    assert p.actions[1].segment == 1


def test_abnormal_exit_restarts() -> None:
    p = plan(desired(), running("ended", exit_reason="abnormal_exit"), NOW, CFG)
    assert kinds(p) == ["reserve"]


def test_404_inside_failover_window_waits() -> None:
    p = plan(desired(), running("missing", not_found_since_ms=NOW - 30_000), NOW, CFG)
    assert kinds(p) == ["query"]
    assert p.requeue_after is not None and p.requeue_after <= 15


def test_404_after_failover_window_restarts() -> None:
    p = plan(desired(), running("missing", not_found_since_ms=NOW - 91_000), NOW, CFG)
    assert kinds(p) == ["reserve"]


def test_seed_311_a_404_gets_a_last_look_after_the_failover_window_before_a_restart() -> None:
    """Chaos seed 311: the one 404 was seen early in the window, the service was killed twice
    within it, and the restart after it came without another query. The task was back from
    failover (its notifications dropped) and recorded beside its replacement for 56 s."""
    cfg = PlanConfig(failover_window=4.0)
    seen_once = running("missing", not_found_since_ms=NOW - 4_200, queried=NOW - 4_200)
    p = plan(desired(), seen_once, NOW, cfg)
    assert kinds(p) == ["query"] and p.requeue_after == cfg.first_query_delay
    looked_again = running("missing", not_found_since_ms=NOW - 4_200, queried=NOW - 100)
    assert kinds(plan(desired(), looked_again, NOW, cfg)) == ["reserve"]
    cannot_look = running("missing", not_found_since_ms=NOW - 20_000, queried=NOW - 20_000)
    assert kinds(plan(desired(), cannot_look, NOW, cfg)) == ["reserve"]  # queries refused


def test_aggressive_recovery_replaces_a_missing_recorder_at_once() -> None:
    o = running("missing", not_found_since_ms=NOW - 5_000)
    p = plan(desired(recovery="aggressive"), o, NOW, CFG)
    assert kinds(p) == ["stop", "reserve"] and p.actions[1].uid == UID1


def test_desired_stopped_stops_and_repeats_nothing_once_stopping() -> None:
    p = plan(desired(state="stopped"), running(), NOW, CFG)
    assert kinds(p) == ["stop"]
    assert kinds(plan(desired(state="stopped"), running(stop_requested=True), NOW, CFG)) == []


def test_a_refused_stop_is_asked_again_after_a_backoff_never_given_up() -> None:
    """Issue 20: a stop answered 1003 counted as done, and the recorder ran on for good. A
    refusal waits ``stop_retry_after`` (doubling per refusal, capped), then stops again."""
    stopped = desired(state="stopped")
    refused = running(stop_refused_ms=NOW - 10_000, stop_refusals=1)
    p = plan(stopped, refused, NOW, CFG)
    assert kinds(p) == [] and p.requeue_after == CFG.stop_retry_after - 10
    assert kinds(plan(stopped, running(stop_refused_ms=NOW - 31_000, stop_refusals=1), NOW, CFG)
                 ) == ["stop"]
    third = running(stop_refused_ms=NOW - 100_000, stop_refusals=3)  # waits 4 x 30 s
    assert kinds(plan(stopped, third, NOW, CFG)) == []
    assert kinds(plan(stopped, third, NOW + 21_000, CFG)) == ["stop"]
    many = running(stop_refused_ms=NOW - CFG.stop_refused_backoff_max * 1000, stop_refusals=30)
    assert kinds(plan(stopped, many, NOW, CFG)) == ["stop"], "the backoff is capped"


def test_session_nobody_desires_is_stopped_but_a_foreign_one_is_left_alone() -> None:
    ours = SessionObs("x", UID0, "recording", True)
    theirs = SessionObs("y", "1234", "recording", False)
    p = plan(None, Observed(sessions=(ours, theirs)), NOW, CFG)
    assert [a.sid for a in p.actions] == ["x"]


def test_foreign_recorder_is_stopped_only_in_an_owned_channel() -> None:
    o = running()
    theirs = SessionObs("y", "1234", "recording", False)
    o2 = Observed(o.segments, (*o.sessions, theirs))
    assert kinds(plan(desired(), o2, NOW, CFG)) == []
    p = plan(desired(own_channel=True), o2, NOW, CFG)
    assert [(a.kind, a.sid) for a in p.actions] == [("stop", "y")]


def test_crash_after_start_adopts_the_session_found_by_uid() -> None:
    seg = SegmentObs(0, UID0, "res", NOW - 10_000, NOW - 9_000)
    found = SessionObs("sidX", UID0, "recording", True)
    p = plan(desired(), Observed((seg,), (found,)), NOW, CFG)
    assert kinds(p) == ["adopt"] and p.actions[0].sid == "sidX"


def test_crash_after_start_retries_the_same_start_never_a_new_segment() -> None:
    seg = SegmentObs(0, UID0, "res", NOW - 10_000, NOW - 9_000)
    p = plan(desired(), Observed((seg,)), NOW, CFG)
    assert kinds(p) == ["start"] and p.actions[0].segment == 0


def test_already_recording_waits_to_adopt() -> None:
    seg = SegmentObs(0, UID0, "res", NOW - 10_000, NOW - 9_000, "already_recording")
    p = plan(desired(), Observed((seg,)), NOW, CFG)
    assert kinds(p) == []


def test_rejected_generation_is_degraded_until_the_spec_changes() -> None:
    seg = SegmentObs(0, UID0, "res", NOW - 10_000, NOW - 9_000, "rejected")
    o = Observed((seg,), rejected_generation=1)
    assert kinds(plan(desired(), o, NOW, CFG)) == []
    assert kinds(plan(Desired(SPEC, 2), o, NOW, CFG)) == ["reserve"]


# -- properties ------------------------------------------------------------------------------

states = st.sampled_from(["starting", "recording", "stopping", "ended", "missing", "unknown"])
times = st.one_of(st.none(), st.integers(NOW - 10_000_000, NOW))
uids = st.sampled_from([UID0, UID1, "1234"])


@st.composite
def observations(draw: st.DrawFn) -> Observed:
    n = draw(st.integers(0, 3))
    segments = tuple(
        SegmentObs(
            i,
            CFG.uids.recorder_uid(ROOM, i),
            draw(st.one_of(st.none(), st.just(f"r{i}"))),
            draw(times),
            draw(times),
            draw(st.sampled_from([None, "retryable", "already_recording", "channel_empty"])),
            draw(st.one_of(st.none(), st.just(f"s{i}"))),
            draw(times),
        )
        for i in range(n)
    )
    sids = [s.sid for s in segments if s.sid] + ["orphan"]
    sessions = tuple(
        SessionObs(
            sid,
            uid,
            draw(states),
            CFG.uids.contains(uid),
            None,
            draw(times),
            draw(times),
            draw(times),
            draw(times),
            draw(st.booleans()),
            draw(st.sampled_from([None, "no_users"])),
            None,
            draw(times),
            draw(st.integers(0, 2)),
        )
        for sid in draw(st.lists(st.sampled_from(sids), unique=True))
        for uid in [draw(uids)]
    )
    return Observed(
        segments,
        sessions,
        draw(st.sampled_from([None, True, False])),
        draw(st.sampled_from([None, 1])),
    )


desires = st.one_of(
    st.none(),
    st.builds(
        lambda state, rec, own, gen: Desired(
            RecordingSpec(state=state, recovery=rec, own_channel=own, channel=ROOM), gen
        ),
        st.sampled_from(["recording", "stopped"]),
        st.sampled_from(["standard", "aggressive"]),
        st.booleans(),
        st.integers(1, 2),
    ),
)


@settings(max_examples=400, deadline=None)
@given(desires, observations())
def test_properties_of_every_plan(d: Desired | None, o: Observed) -> None:
    p = plan(d, o, NOW, CFG)
    assert p == plan(d, o, NOW, CFG)  # deterministic
    starts = [a for a in p.actions if a.kind in ("reserve", "start")]
    assert len(starts) <= 1, "never two starts in one pass"
    stops = [a.sid for a in p.actions if a.kind == "stop"]
    assert len(stops) == len(set(stops)), "never stop a session twice in one pass"
    by_sid = {s.sid: s for s in o.sessions}
    for sid in stops:
        s = by_sid[sid]
        assert s.alive and not s.stop_requested
        assert s.stop_intent_ms is None or NOW - s.stop_intent_ms >= CFG.stop_retry_after * 1000
        ours = s.ours or sid in {seg.sid for seg in o.segments}
        assert ours or (d is not None and d.spec.own_channel), "never stop a foreign recorder"
    if d is None or d.spec.state == "stopped":
        assert not starts, "nothing starts when nothing is desired"
    elif o.rejected_generation == d.generation:
        assert not p.actions, "rejected: no provider calls until the spec changes"
    if o.channel_empty is True:
        assert not starts, "never start into a channel known to be empty"
    for a in starts:
        assert a.uid == CFG.uids.recorder_uid(ROOM, a.segment or 0)
        live_same_uid = [
            s
            for s in o.sessions
            if s.uid == a.uid and s.alive and s.sid not in stops and s.state != "missing"
        ]
        cur = o.current
        if a.kind == "reserve" and cur is not None and cur.sid is None:
            assert a.segment == cur.segment, "an unconfirmed start is retried, never replaced"
        if a.kind == "reserve":
            assert (
                not live_same_uid
                or all(s.stop_requested for s in live_same_uid)
                or a.segment != (o.current.segment if o.current else -1)
            )
    assert p.requeue_after is None or p.requeue_after >= 1.0 or p.requeue_after > 0


def test_uids_alternate_between_primary_and_spare_and_stay_in_range() -> None:
    r = UidRange(base=1000, span=100)
    a, b, c = (r.recorder_uid("x/y", i) for i in range(3))
    assert a != b and a == c and r.contains(a) and r.contains(b) and not r.contains(999)


def test_failed_start_into_an_empty_channel_does_not_hot_loop() -> None:
    seg = SegmentObs(0, UID0, "res", NOW - 10_000, NOW - 9_000, "retryable")
    p = plan(
        desired(), Observed((seg,), channel_empty=True, presence_seen_ms=NOW - 1_000), NOW, CFG
    )
    assert kinds(p) == [] and p.requeue_after == CFG.query_interval - 1
    p = plan(desired(), Observed((seg,), channel_empty=True), NOW, CFG)
    assert kinds(p) == ["presence"]


def test_uncertain_start_is_retried_on_the_same_segment_and_uid() -> None:
    """A start that timed out may have landed: a new uid could record twice; the same cannot."""
    seg = SegmentObs(0, UID0, "res", NOW - 10_000, NOW - 9_000, "retryable", attempts=1)
    (action,) = plan(desired(), Observed((seg,)), NOW, CFG).actions
    assert (action.kind, action.segment, action.uid, action.attempt) == ("reserve", 0, UID0, 1)


def test_unadopted_session_is_probed_with_the_same_uid_after_the_adoption_window() -> None:
    seg = SegmentObs(0, UID0, "res", NOW - 100_000, NOW - 99_000, "already_recording", attempts=2)
    (action,) = plan(desired(), Observed((seg,)), NOW, CFG).actions
    assert (action.kind, action.segment, action.uid, action.attempt) == ("reserve", 0, UID0, 2)


def test_a_session_that_just_reported_recording_is_young_not_stalled() -> None:
    """Seen under load: a status update (4) arrived before any slice or upload event."""
    seg = SegmentObs(0, UID0, "res", NOW - 4_000, NOW - 3_000, None, "sid0", NOW - 2_000)
    sess = SessionObs("sid0", UID0, "recording", True, 0, NOW - 2_000)
    assert kinds(plan(desired(), Observed((seg,), (sess,)), NOW, CFG)) == []


def test_seed_7_stop_intent_without_result_is_stopped_again() -> None:
    """Chaos seed 7: the service died between a stop's intent and its result; the stop was
    never retried and the recorder of a stopped room lived on."""
    young = running(stop_intent_ms=NOW - 5_000, stop_attempts=1)
    assert kinds(plan(desired(state="stopped"), young, NOW, CFG)) == []
    old = running(stop_intent_ms=NOW - 60_000, stop_attempts=1)
    (stop,) = plan(desired(state="stopped"), old, NOW, CFG).actions
    assert (stop.kind, stop.attempt) == ("stop", 1), "a new attempt: a new intent id"


def test_seed_10_missing_after_a_stop_is_checked_at_the_window_end_and_once_after() -> None:
    """Chaos seed 10: with re-checks every 10 s a short failover window got one look at most,
    and a task back from failover (its notifications dropped) lived on. The look after the
    window is had even when the service was down just after it (seed 311's lesson)."""
    cfg = PlanConfig(failover_window=4.0)
    o = running("missing", not_found_since_ms=NOW - 1_000)
    p = plan(desired(state="stopped"), o, NOW, cfg)
    assert kinds(p) == ["query"] and p.requeue_after == 4.0  # at the window's end, not 10 s
    just_after = running("missing", not_found_since_ms=NOW - 6_000, queried=NOW - 6_000)
    p = plan(desired(state="stopped"), just_after, NOW, cfg)
    assert kinds(p) == ["query"] and p.requeue_after == cfg.first_query_delay
    looked = running("missing", not_found_since_ms=NOW - 6_000, queried=NOW - 1_000)
    assert kinds(plan(desired(state="stopped"), looked, NOW, cfg)) == []
    was_down = running("missing", not_found_since_ms=NOW - 12_000, queried=NOW - 12_000)
    assert kinds(plan(desired(state="stopped"), was_down, NOW, cfg)) == ["query"]  # 8 s late
    long_gone = running("missing", not_found_since_ms=NOW - 20_000, queried=NOW - 20_000)
    assert kinds(plan(desired(state="stopped"), long_gone, NOW, cfg)) == []


def test_an_idle_exit_newer_than_presence_waits_for_a_join() -> None:
    """The channel looks occupied (a leave event was lost) but the recorder left it for want of
    users: restarting would idle out again, in a loop. Wait for news of the channel."""
    seg = SegmentObs(0, UID0, "res", NOW - 90_000, NOW - 89_000, None, "sid0", NOW - 89_000)
    gone = SessionObs(
        "sid0",
        UID0,
        "ended",
        True,
        0,
        NOW - 89_000,
        exit_reason="no_users",
        idle_exit_ms=NOW - 5_000,
    )
    recent = Observed((seg,), (gone,), channel_empty=False, presence_seen_ms=NOW - 30_000)
    assert kinds(plan(desired(), recent, NOW, CFG)) == []
    stale = Observed((seg,), (gone,), channel_empty=False, presence_seen_ms=NOW - 60_000)
    assert kinds(plan(desired(), stale, NOW, CFG)) == ["presence"]  # ask; never start blind
    rejoined = Observed((seg,), (gone,), channel_empty=False, presence_seen_ms=NOW - 1_000)
    assert kinds(plan(desired(), rejoined, NOW, CFG)) == ["reserve"]


def test_a_session_of_a_forgotten_segment_is_never_adopted_again() -> None:
    """Found by ``make soak`` (issue 20): a session adopted by segment 22 went missing; once
    segment 22 was pruned from the room's row, its uid made it look like segment 38's
    (the same uid, two segments on), whose adoption was a duplicate event: adopt, every pass,
    for good, and the room never recorded again."""
    from reconcilers.observed import observe

    uid = CFG.uids.recorder_uid(ROOM, 38)
    segments = {str(n): {"uid": CFG.uids.recorder_uid(ROOM, n), "sid": f"s{n}"}
                for n in range(33, 38)}
    segments["38"] = {"uid": uid, "resource_id": "r38", "reserved_ms": NOW - 300_000,
                      "start_intent_ms": NOW - 300_000, "start_failed": "rate_limited"}
    room_row = {"spec": SPEC.to_json(), "generation": 3, "segments": segments,
                "tenant": "t1", "name": "room-a"}
    old = {"sid": "s22", "uid": uid, "recorder_uid": uid, "segment": 22, "state": "missing",
           "not_found_since_ms": NOW - 600_000, "last_query_ms": NOW - 1_000}
    d, o = observe(room_row, [old], None, CFG.uids)
    assert o.session("s22") is not None and o.session("s22").segment == 22  # type: ignore[union-attr]
    p = plan(d, o, NOW, CFG)
    assert "adopt" not in kinds(p) and "reserve" in kinds(p), p
