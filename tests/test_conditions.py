"""Conditions tell the truth (issue 21, bug 5): each ``last_transition_time`` moves on every
transition (after a stop, Recording's shows the stop, not the start), and a 404 waited out in
the failover window says so instead of "a session is being started"."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from reconcilers.conditions import holding
from service.api.schemas import Condition
from service.api.views import room_view
from service.emulators.agora import FaultConfig
from tests.e2e_harness import World, world


async def conditions(w: World, key: str) -> dict[str, Condition]:
    state = await w.reconciler.state(key)
    view = room_view(state)
    # The listing's index (``holding``) decides the same as the view.
    true = {c.type for c in view.conditions if c.status == "True"}
    assert set(holding(state.desired, state.observed)) == true
    return {c.type: c for c in view.conditions}


def at(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_after_a_stop_recording_shows_the_stop(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        await w.run(key, passes=4)
        started = await conditions(w, key)
        assert started["Recording"].status == "True"
        await w.tick(600)
        stop_asked = w.now()
        await w.declare("standup", state="stopped")
        await w.run(key, passes=2)
        stopped = await conditions(w, key)
        assert stopped["Recording"].status == "False"
        assert at(stopped["Recording"].last_transition_time) >= stop_asked
        assert at(started["Recording"].last_transition_time) < stop_asked


async def test_a_404_in_the_failover_window_is_reported_as_recovering(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        await w.run(key, passes=4)
        (first,) = w.live_tasks("standup")
        # Its notifications are lost: only a query can tell, and it answers 404.
        w.emu.set_faults(FaultConfig(callback_drop_rate=1.0, side_effect_rate=0.0))
        w.emu.kill(first.sid, failover=True, window=60)
        for _ in range(30):
            await w.run(key, step=5)
            state = await w.reconciler.state(key)
            session = state.observed.session(first.sid)
            if session is not None and session.state == "missing":
                break
        else:
            raise AssertionError("the 404 was never observed")
        c = await conditions(w, key)
        assert (c["Progressing"].status, c["Progressing"].reason) == ("True", "Recovering")
        assert "failover window" in c["Progressing"].message
        assert c["Recording"].status == "Unknown"
