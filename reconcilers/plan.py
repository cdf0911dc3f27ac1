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


def spec_drift(spec: RecordingSpec, s: SessionObs) -> tuple[str, ...]:
    """What a session runs otherwise than the spec says, of what only a new segment can
    change: ``mode``, ``storage``, ``options`` (the restart options). Empty when it matches,
    or when nothing is known of what it was started with (a log from before this was kept)."""
    drift: list[str] = []
    if s.applied_mode is not None and s.applied_mode != spec.mode:
        drift.append("mode")
    if s.applied_storage is not None and s.applied_storage != spec.storage:
        drift.append("storage")
    if s.applied_restart is not None and s.applied_restart != spec.restart_fingerprint():
        drift.append("options")
    return tuple(drift)


def live_drift(spec: RecordingSpec, s: SessionObs) -> bool:
    """Whether live options (subscriptions, layout) wait to be applied by an update."""
    live = spec.live_options()
    return bool(live) and s.applied_live != live_hash(live)


def describe_drift(spec: RecordingSpec, s: SessionObs, drift: tuple[str, ...]) -> str:
    """``mode mix -> individual, storage``: what changed, for people."""
    parts = [f"mode {s.applied_mode} -> {spec.mode}" if f == "mode" else f for f in drift]
    return ", ".join(parts)


def plan(desired: Desired | None, observed: Observed, now_ms: int, cfg: PlanConfig) -> Plan:
    """Decide what to do for one room. ``desired`` is ``None`` when nothing wants a recording."""
    if desired is None or desired.spec.state == "stopped":
        return _plan_stopped(desired, observed, now_ms, cfg)
    if observed.rejected_generation == desired.generation:
        return Plan((), None, "degraded: rejected, waiting for a spec change")
    return _plan_recording(desired, observed, now_ms, cfg)


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


def _confirmed_gone(s: SessionObs, now_ms: int, cfg: PlanConfig) -> bool:
    """A 404 is final once a query made after the failover window still gets it.

    Without that look, a task back from failover (its notifications lost) records beside its
    replacement until it next calls in (chaos seed 311: 56 s). A look that cannot be had (the
    provider refuses queries) is given up after three query delays.
    """
    window_end = (s.not_found_since_ms or 0) + int(cfg.failover_window * 1000)
    looked = s.last_query_ms is not None and s.last_query_ms >= window_end
    return looked or _age(now_ms, window_end) >= 3 * cfg.first_query_delay


def _stopping(s: SessionObs, now_ms: int, cfg: PlanConfig) -> bool:
    """A stop was taken by the provider, or begun so recently that its result may be coming,
    or refused so recently that asking again would get the same answer.

    A stop intent without a result (the service died mid-call) ages out, and is tried again;
    so does a refusal, with a backoff: a live recorder of ours that nobody wants is stopped
    whatever answers came before (issue 20: a 1003 once left one recording for good).
    """
    pending = s.stop_intent_ms is not None and _age(now_ms, s.stop_intent_ms) < cfg.stop_retry_after
    return s.stop_requested or pending or _refusal_wait(s, now_ms, cfg) > 0


def _refusal_wait(s: SessionObs, now_ms: int, cfg: PlanConfig) -> float:
    """Seconds until a refused stop is tried again (``<= 0``: now, or never refused)."""
    if s.stop_refused_ms is None or s.stop_requested:
        return 0.0
    backoff = cfg.stop_retry_after * 2.0 ** max(s.stop_refusals - 1, 0)
    return min(backoff, cfg.stop_refused_backoff_max) - _age(now_ms, s.stop_refused_ms)


def _plan_stopped(desired: Desired | None, o: Observed, now_ms: int, cfg: PlanConfig) -> Plan:
    own = desired is not None and desired.spec.own_channel
    actions: list[Action] = [
        _stop(s, "not desired")
        for s in o.sessions
        if s.alive and not _stopping(s, now_ms, cfg) and (s.ours or own) and s.state != "missing"
    ]
    cur = o.current
    pending = (  # a start may have landed, or the provider says one did: wait to adopt it
        cur is not None
        and cur.sid is None
        and cur.start_intent_ms is not None
        and cur.start_failed in (None, "already_recording")
        and _age(now_ms, cur.start_intent_ms) < cfg.adoption_window
    )
    missing = [
        s
        for s in o.sessions
        if s.ours and s.state == "missing" and not _stopping(s, now_ms, cfg)
    ]
    requeue: float | None = None
    if pending:
        requeue = cfg.first_query_delay  # a start may have landed: wait to adopt, then stop it
    if any(s.alive and s.stop_intent_ms is not None and not s.stop_requested for s in o.sessions):
        requeue = cfg.stop_retry_after  # a stop without a result: look again, stop again
    refused = [_refusal_wait(s, now_ms, cfg) for s in o.sessions if s.alive]
    if any(wait > 0 for wait in refused):  # a refused stop: ask again after its backoff
        nxt = max(min(w for w in refused if w > 0), 1.0)
        requeue = nxt if requeue is None else min(requeue, nxt)
    for s in missing:
        # A 404 may be a failover (docs/providers/agora.md#3-query): look until the window ends, and
        # once after it
        # however late the service gets there (``_confirmed_gone``).
        left = cfg.failover_window - _age(now_ms, s.not_found_since_ms)
        if left > 0 or not _confirmed_gone(s, now_ms, cfg):
            actions.append(Query("missing: confirm before giving up", sid=s.sid))
            nxt = min(cfg.first_query_delay * 2, left + 1.0) if left > 0 else cfg.first_query_delay
            requeue = nxt if requeue is None else min(requeue, nxt)
    summary = f"stop {len(actions)} session(s)" if actions else "stopped"
    return Plan(tuple(actions), requeue, summary)


def _next_segment(o: Observed) -> int:
    cur = o.current
    return 0 if cur is None else cur.segment + 1


def _start_new(o: Observed, cfg: PlanConfig, room: str, reason: str) -> Reserve:
    seg = _next_segment(o)
    return Reserve(reason, segment=seg, uid=cfg.uids.recorder_uid(room, seg))


def _plan_recording(d: Desired, o: Observed, now_ms: int, cfg: PlanConfig) -> Plan:
    room = d.uid_seed
    cur = o.current
    actions: list[Action] = []
    requeue: float | None = cfg.query_interval
    summary = ""
    session = o.session(cur.sid) if cur is not None else None
    healthy = False

    # The recorder left an empty channel after the last we heard of who is in it: what we
    # know of the channel is stale (a leave event lost), so it counts as empty until someone
    # joins again. Never a loop of start and idle exit.
    seen = o.presence_seen_ms
    left_idle = (
        session is not None
        and session.exit_reason == "no_users"
        and (
            o.channel_empty is None  # no presence at all: the idle exit is all we know
            or (seen is not None and (session.idle_exit_ms or 0) >= seen)
        )
    )
    empty = o.channel_empty is True or left_idle

    def wait_for_people() -> None:
        """Empty: start on the next join, never a loop of start and idle exit. NCS may lose
        that join, so once what we know of the channel is a query interval old, ask the
        provider who is in it (Agora's advice) and plan again with its answer."""
        nonlocal requeue, summary
        summary = "waiting: channel is empty; will start on the next join"
        age = _age(now_ms, o.presence_seen_ms)
        if age >= cfg.query_interval:
            actions.append(Presence("channel empty: ask the provider who is in it"))
            requeue = 1.0
        else:
            requeue = max(cfg.query_interval - age, 1.0)

    def uid_free(segment: int, uid: str) -> bool:
        """Whether no older recorder of ours still holds ``segment``'s uid (consecutive
        segments alternate two uids, so the one two back). Agora refuses a second task with a
        channel's uid (53), and the new segment would wait for an adoption that never comes
        (chaos seed 16 with spec changes: a rollover's spare uid still held by the segment
        before, two recorders for good). Stop that one first; start once it is gone."""
        nonlocal requeue, summary
        holder = _uid_holder(o, segment, uid, cur)
        if holder is None:
            return True
        asked = any(isinstance(a, Stop) and a.sid == holder.sid for a in actions)
        if holder.state != "stopping" and not _stopping(holder, now_ms, cfg) and not asked:
            why = f"uid {uid}: segment {holder.segment} must end before segment {segment}"
            actions.append(_stop(holder, f"redundant: {why}"))
        requeue = cfg.first_query_delay
        summary = f"waiting: segment {holder.segment} still holds uid {uid}"
        return False

    def begin(reason: str) -> None:
        nonlocal requeue, summary
        if empty:
            wait_for_people()
            return
        action = _start_new(o, cfg, room, reason)
        if not uid_free(action.segment, action.uid):
            return
        actions.append(action)
        requeue, summary = cfg.first_query_delay, reason

    def retry(reason: str) -> None:
        """Reserve again for the *same* segment and uid: if an earlier start landed unseen
        (a crash, a timeout), Agora's cname+uid uniqueness refuses the new one (53) instead of
        recording twice, and the task is adopted when its notifications name it."""
        nonlocal requeue, summary
        if empty:
            wait_for_people()
            return
        assert cur is not None
        if not uid_free(cur.segment, cur.uid):
            return
        actions.append(
            Reserve(reason, segment=cur.segment, uid=cur.uid, attempt=cur.attempts)
        )
        requeue, summary = cfg.first_query_delay, reason

    if cur is None:
        begin("start: nothing running")
    elif cur.sid is None:
        pending = _pending_segment(cur, o, now_ms, cfg, actions, retry, wait_for_people)
        if pending is not None:  # otherwise ``retry`` or ``wait`` has set requeue and summary
            requeue, summary = pending
    elif session is None or session.state == "ended":
        begin("restart: session ended" if session else "restart: session unknown")
    elif session.state == "missing":
        window_left = cfg.failover_window - _age(now_ms, session.not_found_since_ms)
        if d.spec.recovery == "aggressive" and not _stopping(session, now_ms, cfg):
            actions.append(_stop(session, "aggressive recovery: replace a missing recorder"))
            begin("recover: 404, aggressive")
        elif window_left > 0:
            actions.append(Query("404 inside the failover window", sid=session.sid))
            requeue = min(max(window_left, 1.0), 15.0)
            summary = f"waiting for failover ({window_left:.0f}s left)"
        elif not _confirmed_gone(session, now_ms, cfg):
            actions.append(
                Query("404: a last look after the failover window", sid=session.sid)
            )
            requeue = cfg.first_query_delay
            summary = "confirming a 404 after the failover window"
        else:
            begin("restart: gone after the failover window")
    elif session.state in ("stopping",) or _stopping(session, now_ms, cfg):
        begin("restart: session is stopping")
    else:
        healthy, requeue, summary = _check_live(d, cur, session, now_ms, cfg, actions, begin)

    _retire_others(d, o, cur, healthy, actions, now_ms, cfg)
    return Plan(tuple(actions), requeue, summary or "no change")


def _uid_holder(
    o: Observed, segment: int, uid: str, cur: SegmentObs | None
) -> SessionObs | None:
    """A live recorder of ours from another segment that runs under ``segment``'s uid: one
    with the same parity (segments alternate two uids; a failover may have changed the uid it
    reports, not the one Agora knows its task by), or reporting that uid itself."""
    for s in o.sessions:
        if not s.ours or not s.alive or s.state == "missing":
            continue
        if cur is not None and s.sid == cur.sid:
            continue  # the current segment's own session: the one being replaced
        if s.segment is not None and s.segment != segment and s.segment % 2 == segment % 2:
            return s
        if s.segment is not None and s.segment != segment and s.uid == uid:
            return s
    return None


def _pending_segment(
    cur: SegmentObs,
    o: Observed,
    now_ms: int,
    cfg: PlanConfig,
    actions: list[Action],
    retry: Any,
    wait: Any,
) -> tuple[float | None, str] | None:
    """A segment with no sid yet: reserved, or started with the result not recorded (a crash).

    It never moves on to a new segment (a new uid): whatever failed, it retries this one, so
    that a start that landed unseen can only be adopted, never doubled.
    """
    adoptable = next(
        (
            s
            for s in o.sessions
            if s.uid == cur.uid and s.alive and s.segment in (None, cur.segment)
        ),
        None,
    )
    if adoptable is not None:
        actions.append(
            Adopt(
                "adopt: a session with this segment's uid exists",
                segment=cur.segment,
                uid=cur.uid,
                sid=adoptable.sid,
                resource_id=cur.session_resource_id,
            )
        )
        return cfg.first_query_delay, "adopting an already started session"
    if cur.start_failed == "channel_empty" and o.channel_empty is not False:
        wait()  # the provider said so at start
        return None
    if cur.start_failed == "already_recording":
        if _age(now_ms, cur.start_intent_ms) < cfg.adoption_window:
            return cfg.first_query_delay, "waiting to adopt a session the provider already runs"
        retry("probe: is the unadopted session still there?")
        return None
    if cur.start_failed is not None:
        retry(f"retry: start failed ({cur.start_failed})")
        return None
    fresh = cur.resource_id is not None and _age(now_ms, cur.reserved_ms) < cfg.reservation_ttl
    if fresh and (cur.start_intent_ms is None or cur.start_failed is None):
        if o.channel_empty is True:  # emptied since the reserve: never start into it
            wait()
            return None
        start = Start(
            "start: resource reserved",
            segment=cur.segment,
            uid=cur.uid,
            resource_id=cur.resource_id,
            attempt=max(cur.attempts - 1, 0),  # the reservation's own attempt: the same intent
        )
        actions.append(start)
        return cfg.first_query_delay, "starting"
    retry("retry: reservation expired or start lost")
    return None


def _check_live(
    d: Desired,
    cur: SegmentObs,
    s: SessionObs,
    now_ms: int,
    cfg: PlanConfig,
    actions: list[Action],
    begin: Any,
) -> tuple[bool, float | None, str]:
    """A session that the provider reports as starting or recording."""
    # No progress seen yet counts from the start: a session only just reported recording
    # (a status update before its first slice) is young, not stalled.
    progress_age = _age(now_ms, s.last_progress_ms or cur.started_ms)
    if s.state == "starting" and _age(now_ms, cur.started_ms) > cfg.start_confirm:
        actions.append(_stop(s, "stalled: never reached recording"))
        begin("recover: stalled start")
        return False, cfg.first_query_delay, "recover: stalled start"
    if s.state == "recording" and progress_age > cfg.stall_threshold:
        query_age = _age(now_ms, s.last_query_ms)
        if (
            query_age > cfg.first_query_delay
            and progress_age > cfg.stall_threshold + cfg.query_interval
        ):
            actions.append(_stop(s, "stalled: no progress"))
            begin("recover: stalled")
            return False, cfg.first_query_delay, "recover: stalled"
    if _age(now_ms, cur.started_ms) > d.spec.max_segment_seconds - cfg.rollover_margin:
        begin("rollover: segment reaches its time limit")
        return True, cfg.first_query_delay, "rollover: make-before-break"
    drift = spec_drift(d.spec, s)
    if drift and s.state == "recording":
        # A change the session cannot take live: a new segment with the spec as it is now.
        what = f"{describe_drift(d.spec, s, drift)} changed"
        if d.spec.rollout == "restart":  # asked for: stop, then start (a gap)
            actions.append(_stop(s, f"restart: {what}"))
            begin(f"restart: {what}")
            return False, cfg.first_query_delay, f"restart: {what}"
        # Make-before-break: the old one records on until the new one does (_retire_others).
        begin(f"rollover: {what}")
        return True, cfg.first_query_delay, f"rollover: {what}, make-before-break"
    live = d.spec.live_options()
    if live and s.state == "recording" and live_drift(d.spec, s):
        actions.append(Update("spec changed live options", sid=s.sid, options=live))
    fresh = min(_age(now_ms, s.last_query_ms), progress_age)
    if s.state == "starting":
        # Agora advises the first query about 5 s after the sid, not at once.
        fresh, interval = min(fresh, _age(now_ms, cur.started_ms)), cfg.first_query_delay
        wait = interval - fresh
    else:
        interval = cfg.query_interval
        wait = query_slot_wait(s.sid, now_ms, fresh, interval)
    if wait < 1.0:  # a requeue waits at least a second, and a timer may fire a little early
        actions.append(Query("refresh", sid=s.sid))
        return s.state == "recording", interval, "healthy: refreshing"
    return s.state == "recording", max(wait, 1.0), "healthy"


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


def _retire_others(
    d: Desired,
    o: Observed,
    cur: SegmentObs | None,
    healthy: bool,
    actions: list[Action],
    now_ms: int,
    cfg: PlanConfig,
) -> None:
    """Stop what is redundant: older segments once the current one records, foreign recorders
    only where the spec owns the channel."""
    current_sid = cur.sid if cur is not None else None
    for s in o.sessions:
        if s.sid == current_sid or not s.alive or s.state == "missing":
            continue
        if _stopping(s, now_ms, cfg):
            continue
        if cur is not None and cur.sid is None and s.uid == cur.uid:
            continue  # about to be adopted
        if s.ours and (healthy or s.segment is None or (cur and s.segment > cur.segment)):
            if any(session_of(a) == s.sid for a in actions):
                continue
            actions.append(_stop(s, "redundant: another segment is recording"))
        elif not s.ours and d.spec.own_channel:
            actions.append(_stop(s, "foreign recorder in an owned channel"))

