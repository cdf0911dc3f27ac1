"""The room view: desired spec, observed state and Kubernetes-style conditions, from a
:class:`~reconcilers.engine.RoomState`. Shared by the API and ``recctl status``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reconcilers.conditions import sync
from reconcilers.engine import RoomState
from service.api.schemas import Condition, RoomView


def room_view(
    state: RoomState, last: datetime | None = None, nxt: datetime | None = None
) -> RoomView:
    """The view of a room that exists (``state.room_row`` is set and not deleted)."""
    assert state.room_row is not None
    row = state.room_row
    return RoomView(
        room=state.key.split("/", 1)[1],
        spec=row.data["spec"],
        generation=row.data["generation"],
        observed_generation=sync(state.desired, state.observed).observed_generation,
        observed=_observed(state),
        conditions=_conditions(state),
        last_reconcile_at=_iso(last),
        next_reconcile_at=_iso(nxt),
    )


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z") if when else None


def _ms_iso(ms: int | None) -> str | None:
    return _iso(datetime.fromtimestamp(ms / 1000, UTC)) if ms else None


def _observed(state: RoomState) -> dict[str, Any]:
    o = state.observed
    cur = o.current
    session = o.session(cur.sid) if cur else None
    return {
        "segment": cur.segment if cur else None,
        "session": None
        if session is None
        else {
            "sid": session.sid,
            "uid": session.uid,
            "state": session.state,
            "started_at": _ms_iso(session.started_ms),
            "last_progress_at": _ms_iso(session.last_progress_ms),
            "exit_reason": session.exit_reason,
        },
        "segments": [
            {
                "segment": s.segment,
                "uid": s.uid,
                "sid": s.sid,
                "started_at": _ms_iso(s.started_ms),
                "start_failed": s.start_failed,
            }
            for s in o.segments
        ],
        "channel_empty": o.channel_empty,
        "other_sessions": [
            {"sid": s.sid, "uid": s.uid, "state": s.state, "ours": s.ours}
            for s in o.sessions
            if s.alive and (session is None or s.sid != session.sid)
        ],
    }


def _conditions(state: RoomState) -> list[Condition]:
    """Recording, Progressing and Degraded, each with the time of its own last transition:
    when the session reached its state (a stop shows the stop), else the spec's change."""
    o, d = state.observed, state.desired
    row = state.room_row.data if state.room_row else {}
    cur = o.current
    now = sync(state.desired, state.observed)
    session = now.recording or (o.session(cur.sid) if cur else None)
    spec_ms = row.get("updated_ms")
    session_ms = (session.state_since_ms or session.started_ms) if session else None
    recording = session is not None and session.state == "recording"
    missing = session is not None and session.state == "missing"
    wanted = d is not None and d.spec.state == "recording"
    rejected = d is not None and o.rejected_generation == d.generation
    if recording:
        assert session is not None
        rec = Condition(
            type="Recording",
            status="True",
            reason="SessionRecording",
            message=f"session {session.sid} is recording",
            last_transition_time=_ms_iso(session_ms),
        )
    elif missing:
        assert session is not None
        rec = Condition(
            type="Recording",
            status="Unknown",
            reason="SessionNotFound",
            message=f"session {session.sid} answers 404: failing over, or gone",
            last_transition_time=_ms_iso(session_ms),
        )
    else:
        reason = (
            "ChannelEmpty" if o.channel_empty else ("Stopped" if not wanted else "NotRecording")
        )
        ended = _latest(session_ms, spec_ms)
        rec = Condition(
            type="Recording",
            status="False",
            reason=reason,
            message="no session is recording",
            last_transition_time=_ms_iso(ended),
        )
    if wanted and now.pending:
        prog = Condition(
            type="Progressing",
            status="True",
            reason=now.reason,
            message=f"the session does not match the spec yet: {now.pending}",
            last_transition_time=_ms_iso(spec_ms),
        )
    elif wanted and missing and d is not None and d.spec.recovery != "aggressive":
        prog = Condition(
            type="Progressing",
            status="True",
            reason="Recovering",
            message="waiting out the failover window: the session may come back",
            last_transition_time=_ms_iso(session_ms),
        )
    elif wanted and not recording and not rejected and not o.channel_empty:
        prog = Condition(
            type="Progressing",
            status="True",
            reason="Starting",
            message="a session is being started",
            last_transition_time=_ms_iso(_latest(session_ms, spec_ms)),
        )
    else:
        prog = Condition(
            type="Progressing",
            status="False",
            reason="Stable" if recording or not wanted else "Waiting",
            message="",
            last_transition_time=_ms_iso(session_ms if recording else spec_ms),
        )
    deg = Condition(
        type="Degraded",
        status="True" if rejected else "False",
        reason="Rejected" if rejected else "AsExpected",
        message=str(row.get("rejected_reason", "")) if rejected else "",
        last_transition_time=_ms_iso(spec_ms),
    )
    return [rec, prog, deg]


def _latest(*times: int | None) -> int | None:
    return max((t for t in times if t is not None), default=None)
