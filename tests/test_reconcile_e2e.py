"""The reconciler end to end, in process: emulator + intake + SQLite + Agora adapter.

Every scenario named by the reconciler issue: start, heal after a killed recorder (with and
without webhooks), idle channel, live update, stop, orphan stop, and the crash between a start's
intent and its result, which must never leave two sessions for one segment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconcilers.engine import CHANNEL_PREFIX
from reconcilers.events import NewEvent
from reconcilers.identity import intent_id
from reconcilers.providers.base import Reservation, StartRequest
from service.emulators.agora import FaultConfig
from tests.e2e_harness import STORAGE, World, world


async def test_declared_room_is_recorded_and_stays_healthy(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        await w.run(key, passes=4)
        tasks = w.live_tasks("standup")
        assert len(tasks) == 1
        assert tasks[0].uid == w.reconciler.config.uids.recorder_uid(key, 0)
        state = await w.reconciler.state(key)
        session = state.observed.session(state.observed.current.sid)  # type: ignore[union-attr]
        assert session is not None and session.state == "recording"
        result = await w.run(key)
        assert not result.plan.actions and result.result.kind == "requeue"


async def test_killed_recorder_is_healed_with_webhooks(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        await w.run(key, passes=3)
        (first,) = w.live_tasks("standup")
        w.emu.kill(first.sid, failover=False)
        await w.tick(1)
        result = await w.run(key)
        assert [a.kind for a in result.plan.actions] == ["reserve"]
        (second,) = w.live_tasks("standup")
        assert second.sid != first.sid and second.uid != first.uid  # the spare uid


async def test_killed_recorder_is_healed_with_webhooks_dropped(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        await w.run(key, passes=3)
        (first,) = w.live_tasks("standup")
        w.emu.set_faults(FaultConfig(callback_drop_rate=1.0, side_effect_rate=0.0))
        w.emu.kill(first.sid, failover=False)
        healed_after = 0.0
        while not [t for t in w.live_tasks("standup") if t.sid != first.sid]:
            await w.run(key, step=10)
            healed_after += 10
            assert healed_after < 400, "not healed without webhooks"
        cfg = w.reconciler.config
        assert healed_after <= cfg.query_interval + cfg.failover_window + 30


async def test_failover_inside_the_window_is_waited_for_not_replaced(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        await w.run(key, passes=3)
        (first,) = w.live_tasks("standup")
        w.emu.kill(first.sid, failover=True, window=20)
        for _ in range(8):
            await w.run(key, step=5)
        assert [t.sid for t in w.emu.tasks(cname="standup")] == [first.sid]
        assert w.live_tasks("standup")[0].failovers == 1


async def recorder_idled_out(w: World) -> str:
    """A recording room whose only user left: the recorder leaves with NO_USERS."""
    w.emu.join("standup", 11)
    key = await w.declare("standup")
    await w.run(key, passes=3)
    w.emu.leave("standup", 11)
    await w.tick(40)  # maxIdleTime 30
    assert not w.live_tasks("standup")
    return key


async def test_empty_channel_waits_then_starts_on_join(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        key = await recorder_idled_out(w)
        for _ in range(5):
            result = await w.run(key, step=30)
            assert not [a for a in result.plan.actions if a.kind in ("reserve", "start")]
        w.emu.join("standup", 12)
        await w.tick(1)
        result = await w.run(key, passes=2)
        assert len(w.live_tasks("standup")) == 1


async def test_seed_165_a_lost_join_is_found_by_asking_who_is_in_the_channel(
    tmp_path: Path,
) -> None:
    """The channel emptied (the recorder idled out, the channel was destroyed), then someone
    joined while NCS lost every callback: nothing would ever say so. Once what the service
    knows of the channel is a query interval old, it asks Agora who is in it, and starts."""
    async with world(tmp_path) as w:
        key = await recorder_idled_out(w)
        result = await w.run(key)
        assert not [a for a in result.plan.actions if a.kind in ("reserve", "start")]
        w.emu.set_faults(FaultConfig(callback_drop_rate=1.0, side_effect_rate=0.0))
        w.emu.join("standup", 12)
        waited = 0.0
        kinds: list[str] = []
        while not w.live_tasks("standup"):
            result = await w.run(key, step=10)
            kinds += [a.kind for a in result.plan.actions]
            waited += 10
            assert waited <= w.reconciler.config.query_interval + 30, kinds
        assert "presence" in kinds
        assert kinds.index("presence") < kinds.index("reserve")


async def test_desired_stopped_stops_and_a_repeated_stop_is_success(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        await w.run(key, passes=3)
        await w.declare("standup", state="stopped")
        result = await w.run(key, passes=2)
        assert not w.live_tasks("standup")
        assert result.result.kind in ("done", "requeue") and not result.plan.actions


async def test_live_subscription_change_is_an_update_not_a_restart(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        await w.run(key, passes=3)
        live = {"recordingConfig": {"maxIdleTime": 30},
                "streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["11"]}}}
        await w.declare("standup", options=live)
        result = await w.run(key)
        assert [a.kind for a in result.plan.actions] == ["update"]
        assert len(w.emu.tasks(cname="standup")) == 1


async def test_orphan_of_a_deleted_room_is_stopped(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        await w.run(key, passes=3)
        await w.store.append(NewEvent(source="api", dedup_key="del", type="room.deleted",
                                      room=key, payload={}, occurred_at=w.now()))
        await w.run(key)
        assert not w.live_tasks("standup")


async def test_unknown_session_in_an_unmapped_channel_is_stopped_if_ours(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("lobby", 11)
        key = await w.declare("lobby")
        await w.run(key, passes=3)
        # The room is re-pointed to another channel: the old channel's session is nobody's.
        await w.declare("lobby", channel="lobby2")
        result = await w.run(CHANNEL_PREFIX + "agora/lobby")
        assert [a.kind for a in result.plan.actions] == ["stop"]
        assert not w.live_tasks("lobby")


async def test_crash_between_start_intent_and_result_never_doubles(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        uid = w.reconciler.config.uids.recorder_uid(key, 0)
        provider = w.reconciler.providers["agora"]
        request = StartRequest(key, "standup", "mix", uid, {"recordingConfig": {"maxIdleTime": 30}},
                               STORAGE)
        # What a process did before it died: intents recorded, the start landed, no result.
        base = {"segment": 0, "uid": uid, "generation": 1, "provider": "agora"}
        rkey = intent_id(key, 1, 0, "reserve")
        await w.store.append(NewEvent("reconciler", rkey, "intent.reserve", base, room=key))
        reservation = await provider.reserve(request)
        assert isinstance(reservation, Reservation)
        await w.store.append(NewEvent("reconciler", rkey + "|result", "result.reserve",
                                      {**base, "resource_id": reservation.resource_id}, room=key))
        skey = intent_id(key, 1, 0, f"start:{reservation.resource_id}")
        await w.store.append(NewEvent("reconciler", skey, "intent.start",
                                      {**base, "resource_id": reservation.resource_id}, room=key))
        await provider.start(request, reservation)
        # The restarted service reconciles: it must find the task, not start another.
        for _ in range(6):
            await w.run(key)
        tasks = w.emu.tasks(cname="standup")
        assert len(tasks) == 1, [t.sid for t in tasks]
        state = await w.reconciler.state(key)
        assert state.observed.current is not None
        assert state.observed.current.sid == tasks[0].sid, "adopted"


async def test_a_deleted_room_never_stops_the_next_room_on_its_channel(tmp_path: Path) -> None:
    """Rooms are forgotten, channels reused: the old room's pass sees only its own recorders."""
    async with world(tmp_path) as w:
        w.emu.join("shared", 11)
        old = await w.declare("old", channel="shared")
        await w.run(old, passes=3)
        await w.store.append(NewEvent(source="api", dedup_key="del-old", type="room.deleted",
                                      room=old, payload={}, occurred_at=w.now()))
        await w.run(old, passes=2)
        assert not w.live_tasks("shared")
        new = await w.declare("new", channel="shared")
        await w.run(new, passes=3)
        (task,) = w.live_tasks("shared")
        result = await w.run(old, passes=2)
        assert not result.plan.actions, "the old room leaves the new room's recorder alone"
        assert [t.sid for t in w.live_tasks("shared")] == [task.sid]



async def test_a_channel_pass_queued_before_its_room_was_declared_stops_nothing(
    tmp_path: Path,
) -> None:
    """Seen in the demo: a resync read the rooms, a room was declared and started, and the
    resync, reading the sessions next, took its channel for an orphan's."""
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        await w.run(key, passes=3)
        result = await w.reconciler.reconcile(CHANNEL_PREFIX + "agora/standup")
        assert not result.plan.actions
        assert len(w.live_tasks("standup")) == 1


async def a_start_lands_unanswered(w: World) -> tuple[str, Any]:
    """A declared room whose first start reaches Agora but whose answer is lost (a timeout
    after the fact): the room's key and the emulator's task."""
    w.emu.join("standup", 11)
    key = await w.declare("standup")
    w.emu.set_faults(FaultConfig(timeout_rates={"start": 1.0}, hang_seconds=0,
                                 side_effect_rate=1.0))
    await w.reconciler.reconcile(key)
    (task,) = w.live_tasks("standup")
    w.emu.set_faults(FaultConfig(side_effect_rate=0.0))
    return key, task


async def assert_the_next_pass_stops(w: World, key: str, task: Any) -> None:
    result = await w.run(key)
    assert [(a.kind, a.sid) for a in result.plan.actions] == [("stop", task.sid)]
    assert not w.live_tasks("standup"), result.report


async def test_seed_85_a_start_in_doubt_is_stopped_when_its_room_stops_wanting_it(
    tmp_path: Path,
) -> None:
    """Chaos seed 85: the service died after a start's intent, before its answer; the room was
    declared stopped meanwhile. The session is known only from its notifications (a sid, no
    resource id); the resource id is the one the segment's start intent carried."""
    async with world(tmp_path) as w:
        key, task = await a_start_lands_unanswered(w)
        await w.tick(5)
        rows = await w.store.rows("sessions", room="agora/standup")
        assert [r.data.get("resource_id") for r in rows] == [None], "known from notifications"
        await w.declare("standup", state="stopped")
        await assert_the_next_pass_stops(w, key, task)


async def test_seed_226_a_session_answered_already_recording_is_stopped_with_its_own_resource(
    tmp_path: Path,
) -> None:
    """Chaos seed 226: a start (resource A) timed out but landed; the retry reserved resource
    B and its start answered 53, "already recording". The session is A's: a stop must carry A,
    whether the room stops wanting it before the session is adopted or after."""
    for adopt_first in (False, True):
        async with world(tmp_path / str(adopt_first)) as w:
            key, task = await a_start_lands_unanswered(w)
            room = await w.store.get_row("rooms", key)
            assert room is not None
            first = room.data["segments"]["0"]["resource_id"]
            await w.reconciler.reconcile(key)  # reserve B, start: 53
            room = await w.store.get_row("rooms", key)
            assert room is not None
            segment = room.data["segments"]["0"]
            assert (segment["start_failed"], segment["doubt_resource_ids"]) == (
                "already_recording", [first])
            assert segment["resource_id"] != first
            if adopt_first:
                await w.tick(1)  # the session's notifications arrive
                result = await w.reconciler.reconcile(key)
                assert [(a.kind, a.resource_id) for a in result.plan.actions] == [
                    ("adopt", first)]
            await w.declare("standup", state="stopped")
            if not adopt_first:  # the session is not known yet: wait to adopt it, then stop
                result = await w.run(key)
                assert result.plan.requeue_after == w.reconciler.config.first_query_delay
            await assert_the_next_pass_stops(w, key, task)


async def test_seed_259_a_failed_retry_keeps_the_resource_of_the_start_in_doubt(
    tmp_path: Path,
) -> None:
    """Chaos seed 259: a start (resource A) answered 65 but landed; the retry's reserve failed
    (there: 429), which left the segment without a resource. The stop must still carry A."""
    async with world(tmp_path) as w:
        key, task = await a_start_lands_unanswered(w)
        room = await w.store.get_row("rooms", key)
        assert room is not None
        first = room.data["segments"]["0"]["resource_id"]
        w.emu.set_faults(FaultConfig(error_rates={"acquire": 1.0}, side_effect_rate=0.0))
        await w.reconciler.reconcile(key)  # the retry's reserve fails
        room = await w.store.get_row("rooms", key)
        assert room is not None
        segment = room.data["segments"]["0"]
        assert segment["start_failed"] is not None and segment["resource_id"] is None
        assert segment["doubt_resource_ids"] == [first]
        w.emu.set_faults(FaultConfig(side_effect_rate=0.0))
        await w.tick(1)  # the session's notifications arrive
        await w.declare("standup", state="stopped")
        await assert_the_next_pass_stops(w, key, task)
