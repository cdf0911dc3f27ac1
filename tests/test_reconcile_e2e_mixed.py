"""Agora and Cloudflare rooms in one world, end to end: both record, a Cloudflare recording
that dies is healed (with and without its webhooks), an empty meeting is waited on instead of
restarted in a loop, a stopped room is stopped, and the Agora room never notices."""

from __future__ import annotations

from pathlib import Path

from reconcilers.projections import closed_index
from service.emulators.cloudflare import FaultConfig
from tests.e2e_mixed_harness import MixedWorld, mixed_world


async def _both_recording(w: MixedWorld) -> tuple[str, str]:
    w.agora.join("standup", 11)
    w.cloudflare.join("m-weekly", "p1")
    agora_key = await w.declare("standup", "agora")
    cf_key = await w.declare("m-weekly", "cloudflare")
    await w.run(agora_key, cf_key, passes=4)
    return agora_key, cf_key


async def _session_state(w: MixedWorld, key: str) -> str | None:
    state = await w.reconciler.state(key)
    cur = state.observed.current
    session = state.observed.session(cur.sid if cur else None)
    return session.state if session else None


async def test_mixed_rooms_record_and_a_killed_cloudflare_recording_is_healed(
    tmp_path: Path,
) -> None:
    async with mixed_world(tmp_path) as w:
        agora_key, cf_key = await _both_recording(w)
        assert len(w.agora.tasks(cname="standup", live=True)) == 1
        (first,) = w.live("m-weekly")
        assert first["status"] == "RECORDING"
        assert await _session_state(w, cf_key) == "recording"
        assert await _session_state(w, agora_key) == "recording"

        w.cloudflare.kill(first["id"])  # ERRORED, INTERNAL_ERROR, webhook sent
        await w.tick(1)
        assert await _session_state(w, cf_key) == "ended"
        (result,) = await w.run(cf_key)
        assert [a.kind for a in result.plan.actions] == ["reserve"]
        await w.run(agora_key, cf_key, passes=2)
        (second,) = w.live("m-weekly")
        assert second["id"] != first["id"] and second["status"] == "RECORDING"
        assert len(w.agora.tasks(cname="standup")) == 1, "the Agora room was left alone"


async def test_cloudflare_recording_errored_without_webhooks_is_healed_by_query(
    tmp_path: Path,
) -> None:
    async with mixed_world(tmp_path) as w:
        _, cf_key = await _both_recording(w)
        (first,) = w.live("m-weekly")
        w.cloudflare.set_faults(FaultConfig(callback_drop_rate=1.0, side_effect_rate=0.0))
        w.cloudflare.kill(first["id"])
        waited = 0.0
        while not w.live("m-weekly"):
            await w.run(cf_key, step=10)
            waited += 10
            assert waited <= 200, "not healed without webhooks"
        assert w.live("m-weekly")[0]["id"] != first["id"]


async def test_empty_meeting_is_waited_on_then_recorded_when_it_starts_again(
    tmp_path: Path,
) -> None:
    async with mixed_world(tmp_path) as w:
        _, cf_key = await _both_recording(w)
        w.cloudflare.leave("m-weekly", "p1")  # meeting.ended; the recording stops 60 s later
        await w.tick(70)
        assert not w.live("m-weekly")
        assert w.cloudflare.recordings(meeting_id="m-weekly")[0]["stop_reason"]["reason"] == (
            "ALL_PEERS_LEFT"
        )
        for _ in range(4):
            (result,) = await w.run(cf_key, step=30)
            assert not [a for a in result.plan.actions if a.kind in ("reserve", "start")]
        assert len(w.cloudflare.recordings(meeting_id="m-weekly")) == 1
        w.cloudflare.join("m-weekly", "p2")  # meeting.started: the room is woken
        await w.tick(1)
        await w.run(cf_key, passes=2)
        assert len(w.live("m-weekly")) == 1


async def test_stopped_cloudflare_room_is_stopped_and_uploads(tmp_path: Path) -> None:
    async with mixed_world(tmp_path) as w:
        _, cf_key = await _both_recording(w)
        await w.declare("m-weekly", "cloudflare", state="stopped")
        await w.run(cf_key, passes=3)
        assert not w.live("m-weekly")
        (done,) = w.cloudflare.recordings(meeting_id="m-weekly")
        assert done["status"] == "UPLOADED" and done["stop_reason"]["reason"] == "API_CALL"
        state = await w.reconciler.state(cf_key)
        rows = await w.store.rows("sessions", room=closed_index("cloudflare/m-weekly"))
        assert rows[0].data["state"] == "ended" and rows[0].data["files"]
        assert state.observed.current is not None
        assert len(w.agora.tasks(cname="standup", live=True)) == 1


async def test_a_start_lost_in_a_crash_is_adopted_not_doubled(tmp_path: Path) -> None:
    async with mixed_world(tmp_path) as w:
        w.cloudflare.join("m-crash", "p1")
        key = await w.declare("m-crash", "cloudflare")
        # The start reaches RealtimeKit but its answer is lost (a 504 after the fact).
        w.cloudflare.set_faults(FaultConfig(timeout_rates={"start": 1.0}, hang_seconds=0,
                                            side_effect_rate=1.0))
        await w.run(key)
        assert len(w.live("m-crash")) == 1
        w.cloudflare.set_faults(FaultConfig(side_effect_rate=0.0))
        await w.run(key, passes=4)
        recordings = w.cloudflare.recordings(meeting_id="m-crash")
        assert len(recordings) == 1, "adopted, not started twice"
        state = await w.reconciler.state(key)
        assert state.observed.current is not None
        assert state.observed.current.sid == recordings[0]["id"]


async def test_an_empty_meeting_without_webhooks_is_not_restarted_in_a_loop(
    tmp_path: Path,
) -> None:
    async with mixed_world(tmp_path) as w:
        w.cloudflare.set_faults(FaultConfig(callback_drop_rate=1.0, side_effect_rate=0.0))
        w.cloudflare.join("m-quiet", "p1")  # no webhook ever arrives: presence is unknown
        key = await w.declare("m-quiet", "cloudflare")
        await w.run(key, passes=4)
        assert len(w.live("m-quiet")) == 1
        w.cloudflare.leave("m-quiet", "p1")
        for _ in range(12):
            await w.run(key, step=30)
        # The query saw ALL_PEERS_LEFT: the plan waits for people instead of restarting.
        assert len(w.cloudflare.recordings(meeting_id="m-quiet")) == 1
        assert not w.live("m-quiet")
