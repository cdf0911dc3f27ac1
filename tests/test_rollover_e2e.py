"""A spec change reaches a running session, against the emulator (issue 21).

A mode change on a live room rolls over make-before-break: a new task with the new mode
records before the old one is stopped, the two overlap only for the hand-over, the log names
it (``intent.reserve`` with a reason starting ``rollover``), and ``observed_generation``
catches up with ``generation``. ``rollout: "restart"`` stops first. A live option is an
update of the running task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconcilers.conditions import holding
from service.api.views import room_view
from tests.e2e_harness import World, world

MIX = {"options": {"recordingConfig": {"maxIdleTime": 30}}}


async def view(w: World, key: str) -> dict[str, Any]:
    state = await w.reconciler.state(key)
    found = room_view(state).model_dump()
    # The listing's index (``holding``) decides the same as the view.
    true = {c["type"] for c in found["conditions"] if c["status"] == "True"}
    assert set(holding(state.desired, state.observed)) == true
    return found


async def test_a_mode_change_rolls_over_make_before_break(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        await w.run(key, passes=4)
        (old,) = w.live_tasks("standup")
        assert old.mode == "mix" and old.status in (4, 5)
        assert (await view(w, key))["observed_generation"] == 1
        await w.declare("standup", mode="individual",
                        options={"recordingConfig": {"maxIdleTime": 30, "subscribeUidGroup": 0}})
        mid = await view(w, key)
        assert mid["generation"] == 2 and mid["observed_generation"] == 1
        progressing = next(c for c in mid["conditions"] if c["type"] == "Progressing")
        assert (progressing["status"], progressing["reason"]) == ("True", "RollingOver")
        assert "mode mix -> individual" in progressing["message"]
        both_recorded = False
        for _ in range(12):
            await w.run(key, step=2)
            live = w.live_tasks("standup")
            if not any(t.sid == old.sid for t in live):
                break
            both_recorded |= any(t.sid != old.sid and t.status in (4, 5) for t in live)
        assert both_recorded, "the new task recorded while the old one still did"
        tasks = w.emu.tasks(cname="standup")
        new = [t for t in tasks if t.sid != old.sid]
        assert len(new) == 1 and new[0].mode == "individual" and new[0].live
        assert new[0].uid != old.uid, "the spare uid"
        old_now = next(t for t in tasks if t.sid == old.sid)
        stopped = old_now.exiting_at or old_now.ended_at  # when it stopped recording
        assert stopped is not None, "the old task was stopped"
        # Make before break: the new task was started, and recording, before the old one ended.
        assert new[0].started_at < stopped
        overlap = stopped - new[0].started_at
        assert overlap <= 2 * 2 + 10, f"overlap {overlap}s: only the hand-over"
        after = await view(w, key)
        assert after["observed_generation"] == after["generation"] == 2
        recording = next(c for c in after["conditions"] if c["type"] == "Recording")
        assert recording["status"] == "True"
        reasons = [e.payload.get("reason", "") for e in await w.store.read_log()
                   if e.type == "intent.reserve"]
        assert any(r.startswith("rollover") for r in reasons), reasons


async def test_rollout_restart_stops_before_it_starts(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup", rollout="restart")
        await w.run(key, passes=4)
        (old,) = w.live_tasks("standup")
        await w.declare("standup", rollout="restart", mode="individual",
                        options={"recordingConfig": {"maxIdleTime": 30, "subscribeUidGroup": 0}})
        await w.run(key, passes=5, step=2)
        tasks = w.emu.tasks(cname="standup")
        old_now = next(t for t in tasks if t.sid == old.sid)
        (new,) = [t for t in tasks if t.sid != old.sid]
        stopped = old_now.exiting_at or old_now.ended_at  # when it stopped recording
        assert stopped is not None and new.started_at >= stopped
        assert new.mode == "individual" and new.live
        assert (await view(w, key))["observed_generation"] == 2


async def test_a_live_option_is_an_update_and_observed_generation_follows(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        await w.run(key, passes=4)
        live = {"recordingConfig": {"maxIdleTime": 30},
                "streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["11"]}}}
        await w.declare("standup", options=live)
        assert (await view(w, key))["observed_generation"] == 1
        await w.run(key, passes=2)
        assert len(w.emu.tasks(cname="standup")) == 1, "no new task for a live change"
        assert (await view(w, key))["observed_generation"] == 2
