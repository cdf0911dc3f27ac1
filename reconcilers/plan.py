"""``plan(desired, observed, now)``: the reconciler's every decision, as a pure function.

No I/O, no clock, no logging: the same inputs always give the same plan, which is what makes it
testable by tables and hypothesis properties. The executor carries the actions out and records
their intents and results in the log; the next pass sees those results as observations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconcilers.actions import (
    Action,
    Adopt,
    Presence,
    Query,
    Reserve,
    Start,
    Stop,
    Update,
    session_of,
)
from reconcilers.budget import QueryBudget
from reconcilers.identity import UidRange
from reconcilers.observed import Desired, Observed, SegmentObs, SessionObs
from reconcilers.spec import RecordingSpec, fingerprint


@dataclass(frozen=True)
class Plan:
    """The actions to take now, and when to look again (``None``: only on an event)."""

    actions: tuple[Action, ...]
    requeue_after: float | None
    summary: str


@dataclass(frozen=True)
class PlanConfig:
    """The timings that shape decisions; all in seconds."""

    uids: UidRange = field(default_factory=UidRange)
    query_interval: float = 60.0
    stall_threshold: float = 180.0
    failover_window: float = 90.0
    start_confirm: float = 90.0
    first_query_delay: float = 5.0
    reservation_ttl: float = 240.0  # Agora's resource lives 300 s; keep a margin
    adoption_window: float = 60.0
    rollover_margin: float = 300.0
    stop_retry_after: float = 30.0  # a stop intent with no result (a crash): stop again
    stop_refused_backoff_max: float = 600.0  # a refused stop is tried again, at most this apart


def live_hash(options: dict[str, Any]) -> str:
    """A stable fingerprint of live-changeable options, to tell whether an update is due."""
    return fingerprint(options)


def spec_drift(spec: RecordingSpec, session: SessionObs) -> tuple[str, ...]:
    """What a session runs otherwise than the spec says, of what only a new segment can
    change: ``mode``, ``storage``, ``options`` (the restart options). Empty when it matches,
    or when nothing is known of what it was started with (a log from before this was kept)."""
    drift: list[str] = []
    if session.applied_mode is not None and session.applied_mode != spec.mode:
        drift.append("mode")
    if session.applied_storage is not None and session.applied_storage != spec.storage:
        drift.append("storage")
    restart = session.applied_restart
    if restart is not None and restart != spec.restart_fingerprint():
        drift.append("options")
    return tuple(drift)


def live_drift(spec: RecordingSpec, session: SessionObs) -> bool:
    """Whether live options (subscriptions, layout) wait to be applied by an update."""
    live = spec.live_options()
    return bool(live) and session.applied_live != live_hash(live)


def describe_drift(spec: RecordingSpec, session: SessionObs, drift: tuple[str, ...]) -> str:
    """``mode mix -> individual, storage``: what changed, for people."""
    parts = [
        f"mode {session.applied_mode} -> {spec.mode}" if what == "mode" else what for what in drift
    ]
    return ", ".join(parts)


def plan(desired: Desired | None, observed: Observed, now_ms: int, cfg: PlanConfig) -> Plan:
    """Decide what to do for one room. ``desired`` is ``None`` when nothing wants a recording."""
    if desired is None or desired.spec.state == "stopped":
        return _plan_stopped(desired, observed, now_ms, cfg)
    if observed.rejected_generation == desired.generation:
        return Plan((), None, "degraded: rejected, waiting for a spec change")
    return _plan_recording(_Room(desired, observed, now_ms, cfg))


def _age(now_ms: int, then_ms: int | None) -> float:
    return float("inf") if then_ms is None else (now_ms - then_ms) / 1000.0


def _stop(session: SessionObs, reason: str) -> Stop:
    return Stop(
        reason,
        sid=session.sid,
        uid=session.uid,
        segment=session.segment,
        attempt=session.stop_attempts,
    )


def _confirmed_gone(session: SessionObs, now_ms: int, cfg: PlanConfig) -> bool:
    """A 404 is final once a query made after the failover window still gets it.

    Without that look, a task back from failover (its notifications lost) records beside its
    replacement until it next calls in (chaos seed 311: 56 s). A look that cannot be had (the
    provider refuses queries) is given up after three query delays.
    """
    window_end = (session.not_found_since_ms or 0) + int(cfg.failover_window * 1000)
    looked = session.last_query_ms is not None and session.last_query_ms >= window_end
    return looked or _age(now_ms, window_end) >= 3 * cfg.first_query_delay


def _stopping(session: SessionObs, now_ms: int, cfg: PlanConfig) -> bool:
    """A stop was taken by the provider, or begun so recently that its result may be coming,
    or refused so recently that asking again would get the same answer.

    A stop intent without a result (the service died mid-call) ages out, and is tried again;
    so does a refusal, with a backoff: a live recorder of ours that nobody wants is stopped
    whatever answers came before (issue 20: a 1003 once left one recording for good).
    """
    begun = session.stop_intent_ms
    pending = begun is not None and _age(now_ms, begun) < cfg.stop_retry_after
    return session.stop_requested or pending or _refusal_wait(session, now_ms, cfg) > 0


def _refusal_wait(session: SessionObs, now_ms: int, cfg: PlanConfig) -> float:
    """Seconds until a refused stop is tried again (``<= 0``: now, or never refused)."""
    if session.stop_refused_ms is None or session.stop_requested:
        return 0.0
    backoff = cfg.stop_retry_after * 2.0 ** max(session.stop_refusals - 1, 0)
    return min(backoff, cfg.stop_refused_backoff_max) - _age(now_ms, session.stop_refused_ms)


def _sooner(requeue: float | None, seconds: float) -> float:
    return seconds if requeue is None else min(requeue, seconds)


def _plan_stopped(
    desired: Desired | None, observed: Observed, now_ms: int, cfg: PlanConfig
) -> Plan:
    own = desired is not None and desired.spec.own_channel
    actions: list[Action] = [
        _stop(session, "not desired")
        for session in observed.sessions
        if session.alive
        and not _stopping(session, now_ms, cfg)
        and (session.ours or own)
        and session.state != "missing"
    ]
    cur = observed.current
    pending = (  # a start may have landed, or the provider says one did: wait to adopt it
        cur is not None
        and cur.sid is None
        and cur.start_intent_ms is not None
        and cur.start_failed in (None, "already_recording")
        and _age(now_ms, cur.start_intent_ms) < cfg.adoption_window
    )
    missing = [
        session
        for session in observed.sessions
        if session.ours and session.state == "missing" and not _stopping(session, now_ms, cfg)
    ]
    requeue: float | None = None
    if pending:
        requeue = cfg.first_query_delay  # a start may have landed: wait to adopt, then stop it
    if any(
        session.alive and session.stop_intent_ms is not None and not session.stop_requested
        for session in observed.sessions
    ):
        requeue = cfg.stop_retry_after  # a stop without a result: look again, stop again
    refused = [
        _refusal_wait(session, now_ms, cfg) for session in observed.sessions if session.alive
    ]
    if any(wait > 0 for wait in refused):  # a refused stop: ask again after its backoff
        requeue = _sooner(requeue, max(min(wait for wait in refused if wait > 0), 1.0))
    for session in missing:
        # A 404 may be a failover (docs/providers/agora.md#3-query): look until the window
        # ends, and once after it however late the service gets there (``_confirmed_gone``).
        left = cfg.failover_window - _age(now_ms, session.not_found_since_ms)
        if left > 0 or not _confirmed_gone(session, now_ms, cfg):
            actions.append(Query("missing: confirm before giving up", sid=session.sid))
            look = min(cfg.first_query_delay * 2, left + 1.0) if left > 0 else cfg.first_query_delay
            requeue = _sooner(requeue, look)
    summary = f"stop {len(actions)} session(s)" if actions else "stopped"
    return Plan(tuple(actions), requeue, summary)


# -- a room that wants a recording --------------------------------------------------------------


@dataclass(frozen=True)
class _Room:
    """The inputs of one plan for a room desired recording, read by every decision below."""

    desired: Desired
    observed: Observed
    now_ms: int
    cfg: PlanConfig

    @property
    def current(self) -> SegmentObs | None:
        return self.observed.current

    @property
    def session(self) -> SessionObs | None:
        """The current segment's session, if it has one the channel reports."""
        cur = self.observed.current
        return self.observed.session(cur.sid) if cur is not None else None

    @property
    def empty(self) -> bool:
        """Nobody to record: the channel is known empty, or the recorder left it idle after
        the last we heard of who is in it (a leave event lost: what we know is stale, so it
        counts as empty until someone joins again). Never a loop of start and idle exit."""
        observed, session = self.observed, self.session
        seen = observed.presence_seen_ms
        left_idle = (
            session is not None
            and session.exit_reason == "no_users"
            and (
                observed.channel_empty is None  # no presence at all: the idle exit is all we know
                or (seen is not None and (session.idle_exit_ms or 0) >= seen)
            )
        )
        return observed.channel_empty is True or left_idle

    def age(self, then_ms: int | None) -> float:
        return _age(self.now_ms, then_ms)

    def stopping(self, session: SessionObs) -> bool:
        return _stopping(session, self.now_ms, self.cfg)


@dataclass(frozen=True)
class _Step:
    """A decision about the current segment: its actions, when to look again, and why.
    ``healthy``: the current segment records, so older segments may be retired."""

    actions: tuple[Action, ...]
    requeue: float | None
    summary: str
    healthy: bool = False


def _plan_recording(room: _Room) -> Plan:
    step = _decide(room)
    retired = _retire_others(room, step)
    return Plan((*step.actions, *retired), step.requeue, step.summary or "no change")


def _decide(room: _Room) -> _Step:
    """What the current segment needs, by what the provider last said of its session."""
    cur, session = room.current, room.session
    if cur is None:
        return _begin(room, "start: nothing running")
    if cur.sid is None:
        return _pending_segment(room, cur)
    if session is None or session.state == "ended":
        return _begin(room, "restart: session ended" if session else "restart: session unknown")
    if session.state == "missing":
        return _missing(room, session)
    if session.state == "stopping" or room.stopping(session):
        return _begin(room, "restart: session is stopping")
    return _check_live(room, cur, session)


def _wait_for_people(room: _Room, after: tuple[Action, ...] = ()) -> _Step:
    """Empty: start on the next join, never a loop of start and idle exit. NCS may lose that
    join, so once what we know of the channel is a query interval old, ask the provider who is
    in it (Agora's advice) and plan again with its answer."""
    summary = "waiting: channel is empty; will start on the next join"
    age = room.age(room.observed.presence_seen_ms)
    if age >= room.cfg.query_interval:
        ask = Presence("channel empty: ask the provider who is in it")
        return _Step((*after, ask), 1.0, summary)
    return _Step(after, max(room.cfg.query_interval - age, 1.0), summary)


def _uid_held(room: _Room, segment: int, uid: str, after: tuple[Action, ...]) -> _Step | None:
    """``None`` when no older recorder of ours still holds ``segment``'s uid (consecutive
    segments alternate two uids, so the one two back); else the step that frees it. Agora
    refuses a second task with a channel's uid (53), and the new segment would wait for an
    adoption that never comes (chaos seed 16 with spec changes: a rollover's spare uid still
    held by the segment before, two recorders for good). Stop that one first; start once it
    is gone."""
    holder = _uid_holder(room.observed, segment, uid, room.current)
    if holder is None:
        return None
    asked = any(isinstance(action, Stop) and action.sid == holder.sid for action in after)
    actions = after
    if holder.state != "stopping" and not room.stopping(holder) and not asked:
        why = f"uid {uid}: segment {holder.segment} must end before segment {segment}"
        actions = (*after, _stop(holder, f"redundant: {why}"))
    summary = f"waiting: segment {holder.segment} still holds uid {uid}"
    return _Step(actions, room.cfg.first_query_delay, summary)


def _begin(room: _Room, reason: str, after: tuple[Action, ...] = ()) -> _Step:
    """After ``after``, start a new segment with the next recorder uid."""
    if room.empty:
        return _wait_for_people(room, after)
    segment = _next_segment(room.observed)
    reserve = Reserve(
        reason, segment=segment, uid=room.cfg.uids.recorder_uid(room.desired.uid_seed, segment)
    )
    held = _uid_held(room, reserve.segment, reserve.uid, after)
    if held is not None:
        return held
    return _Step((*after, reserve), room.cfg.first_query_delay, reason)


def _retry(room: _Room, cur: SegmentObs, reason: str) -> _Step:
    """Reserve again for the *same* segment and uid: if an earlier start landed unseen (a
    crash, a timeout), Agora's cname+uid uniqueness refuses the new one (53) instead of
    recording twice, and the task is adopted when its notifications name it."""
    if room.empty:
        return _wait_for_people(room)
    held = _uid_held(room, cur.segment, cur.uid, ())
    if held is not None:
        return held
    reserve = Reserve(reason, segment=cur.segment, uid=cur.uid, attempt=cur.attempts)
    return _Step((reserve,), room.cfg.first_query_delay, reason)


def _next_segment(observed: Observed) -> int:
    cur = observed.current
    return 0 if cur is None else cur.segment + 1


def _missing(room: _Room, session: SessionObs) -> _Step:
    """The provider answers 404 for the current session: a failover, or gone."""
    cfg = room.cfg
    window_left = cfg.failover_window - room.age(session.not_found_since_ms)
    if room.desired.spec.recovery == "aggressive" and not room.stopping(session):
        stop = _stop(session, "aggressive recovery: replace a missing recorder")
        return _begin(room, "recover: 404, aggressive", after=(stop,))
    if window_left > 0:
        look = Query("404 inside the failover window", sid=session.sid)
        requeue = min(max(window_left, 1.0), 15.0)
        return _Step((look,), requeue, f"waiting for failover ({window_left:.0f}s left)")
    if not _confirmed_gone(session, room.now_ms, cfg):
        look = Query("404: a last look after the failover window", sid=session.sid)
        return _Step((look,), cfg.first_query_delay, "confirming a 404 after the failover window")
    return _begin(room, "restart: gone after the failover window")


def _uid_holder(
    observed: Observed, segment: int, uid: str, cur: SegmentObs | None
) -> SessionObs | None:
    """A live recorder of ours from another segment that runs under ``segment``'s uid: one
    with the same parity (segments alternate two uids; a failover may have changed the uid it
    reports, not the one Agora knows its task by), or reporting that uid itself."""
    for session in observed.sessions:
        if not session.ours or not session.alive or session.state == "missing":
            continue
        if cur is not None and session.sid == cur.sid:
            continue  # the current segment's own session: the one being replaced
        other = session.segment
        if other is not None and other != segment and other % 2 == segment % 2:
            return session
        if other is not None and other != segment and session.uid == uid:
            return session
    return None


def _pending_segment(room: _Room, cur: SegmentObs) -> _Step:
    """A segment with no sid yet: reserved, or started with the result not recorded (a crash).

    It never moves on to a new segment (a new uid): whatever failed, it retries this one, so
    that a start that landed unseen can only be adopted, never doubled.
    """
    cfg = room.cfg
    adoptable = next(
        (
            session
            for session in room.observed.sessions
            if session.uid == cur.uid and session.alive and session.segment in (None, cur.segment)
        ),
        None,
    )
    if adoptable is not None:
        adopt = Adopt(
            "adopt: a session with this segment's uid exists",
            segment=cur.segment,
            uid=cur.uid,
            sid=adoptable.sid,
            resource_id=cur.session_resource_id,
        )
        return _Step((adopt,), cfg.first_query_delay, "adopting an already started session")
    if cur.start_failed == "channel_empty" and room.observed.channel_empty is not False:
        return _wait_for_people(room)  # the provider said so at start
    if cur.start_failed == "already_recording":
        if room.age(cur.start_intent_ms) < cfg.adoption_window:
            waiting = "waiting to adopt a session the provider already runs"
            return _Step((), cfg.first_query_delay, waiting)
        return _retry(room, cur, "probe: is the unadopted session still there?")
    if cur.start_failed is not None:
        return _retry(room, cur, f"retry: start failed ({cur.start_failed})")
    fresh = cur.resource_id is not None and room.age(cur.reserved_ms) < cfg.reservation_ttl
    if fresh and (cur.start_intent_ms is None or cur.start_failed is None):
        if room.observed.channel_empty is True:  # emptied since the reserve: never start into it
            return _wait_for_people(room)
        start = Start(
            "start: resource reserved",
            segment=cur.segment,
            uid=cur.uid,
            resource_id=cur.resource_id,
            attempt=max(cur.attempts - 1, 0),  # the reservation's own attempt: the same intent
        )
        return _Step((start,), cfg.first_query_delay, "starting")
    return _retry(room, cur, "retry: reservation expired or start lost")


def _check_live(room: _Room, cur: SegmentObs, session: SessionObs) -> _Step:
    """A session that the provider reports as starting or recording."""
    cfg, spec = room.cfg, room.desired.spec
    # No progress seen yet counts from the start: a session only just reported recording
    # (a status update before its first slice) is young, not stalled.
    progress_age = room.age(session.last_progress_ms or cur.started_ms)
    if session.state == "starting" and room.age(cur.started_ms) > cfg.start_confirm:
        return _replace(room, session, "stalled: never reached recording", "recover: stalled start")
    if session.state == "recording" and progress_age > cfg.stall_threshold:
        query_age = room.age(session.last_query_ms)
        if (
            query_age > cfg.first_query_delay
            and progress_age > cfg.stall_threshold + cfg.query_interval
        ):
            return _replace(room, session, "stalled: no progress", "recover: stalled")
    if room.age(cur.started_ms) > spec.max_segment_seconds - cfg.rollover_margin:
        begun = _begin(room, "rollover: segment reaches its time limit")
        return _Step(begun.actions, cfg.first_query_delay, "rollover: make-before-break", True)
    drift = spec_drift(spec, session)
    if drift and session.state == "recording":
        # A change the session cannot take live: a new segment with the spec as it is now.
        what = f"{describe_drift(spec, session, drift)} changed"
        if spec.rollout == "restart":  # asked for: stop, then start (a gap)
            return _replace(room, session, f"restart: {what}", f"restart: {what}")
        # Make-before-break: the old one records on until the new one does (_retire_others).
        begun = _begin(room, f"rollover: {what}")
        summary = f"rollover: {what}, make-before-break"
        return _Step(begun.actions, cfg.first_query_delay, summary, True)
    return _keep_live(room, cur, session, progress_age)


def _replace(room: _Room, session: SessionObs, why_stop: str, why_start: str) -> _Step:
    """Stop the current session and start a new segment (a gap), whatever the start waits
    for: the summary and the next look are the recovery's."""
    begun = _begin(room, why_start, after=(_stop(session, why_stop),))
    return _Step(begun.actions, room.cfg.first_query_delay, why_start)


def _keep_live(room: _Room, cur: SegmentObs, session: SessionObs, progress_age: float) -> _Step:
    """A healthy session: apply live options that changed, and query it in its slot."""
    cfg, recording = room.cfg, session.state == "recording"
    live = room.desired.spec.live_options()
    actions: tuple[Action, ...] = ()
    if live and recording and live_drift(room.desired.spec, session):
        actions = (Update("spec changed live options", sid=session.sid, options=live),)
    fresh = min(room.age(session.last_query_ms), progress_age)
    if session.state == "starting":
        # Agora advises the first query about 5 s after the sid, not at once.
        fresh, interval = min(fresh, room.age(cur.started_ms)), cfg.first_query_delay
        wait = interval - fresh
    else:
        interval = cfg.query_interval
        wait = query_slot_wait(session.sid, room.now_ms, fresh, interval)
    if wait < 1.0:  # a requeue waits at least a second, and a timer may fire a little early
        refresh = Query("refresh", sid=session.sid)
        return _Step((*actions, refresh), interval, "healthy: refreshing", recording)
    return _Step(actions, max(wait, 1.0), "healthy", recording)


def query_slot_wait(key: str, now_ms: int, fresh: float, interval: float) -> float:
    """Seconds until ``key``'s next query slot (``<= 0``: query now), ``fresh`` seconds after
    the last news of the session.

    Each session has a fixed phase in the interval (:meth:`QueryBudget.spread` of its key), so
    queries stay spread evenly over the interval after a restart, a resync or a burst of
    starts, instead of arriving together and crowding out starts under the rate limit. The
    slot is the first one at least half an interval after the news: a steady session is
    queried once an interval, and a session with news between half and one and a half.
    """
    period_ms = interval * 1000
    earliest_ms = now_ms + (interval / 2 - fresh) * 1000
    phase_ms = QueryBudget.spread(key, interval) * 1000
    slot_ms = earliest_ms + (phase_ms - earliest_ms) % period_ms
    return (slot_ms - now_ms) / 1000


def _retire_others(room: _Room, step: _Step) -> tuple[Stop, ...]:
    """Stop what is redundant: older segments once the current one records, foreign recorders
    only where the spec owns the channel."""
    cur = room.current
    current_sid = cur.sid if cur is not None else None
    stops: list[Stop] = []
    for session in room.observed.sessions:
        if session.sid == current_sid or not session.alive or session.state == "missing":
            continue
        if room.stopping(session):
            continue
        if cur is not None and cur.sid is None and session.uid == cur.uid:
            continue  # about to be adopted
        newer = cur is not None and session.segment is not None and session.segment > cur.segment
        if session.ours and (step.healthy or session.segment is None or newer):
            if any(session_of(action) == session.sid for action in step.actions):
                continue
            stops.append(_stop(session, "redundant: another segment is recording"))
        elif not session.ours and room.desired.spec.own_channel:
            stops.append(_stop(session, "foreign recorder in an owned channel"))
    return tuple(stops)
