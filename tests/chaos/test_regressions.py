"""Regression tests for failures the chaos runs found, each named after the seed that found it.

They run in process (``tests/e2e_harness.py``: emulator on a manual clock), so the race the seed
hit by chance is replayed exactly, every time.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e_harness import world


async def test_seed_1_stop_answered_404_during_failover_is_stopped_once_it_returns(
    tmp_path: Path,
) -> None:
    """Seed 1: the room stopped wanting a recording while its recorder was failing over. The
    stop got 404 (a task failing over answers 404, docs/providers/agora.md#3-query), the session was
    folded as ended for good, and the task that came back from failover recorded for ever."""
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        await w.run(key, passes=3)
        (task,) = w.live_tasks("standup")
        w.emu.kill(task.sid, failover=True)  # 404 for failover_seconds (30), then back
        await w.tick(1)
        await w.declare("standup", state="stopped")
        result = await w.run(key, step=1)
        assert [a.kind for a in result.plan.actions] == ["stop"]
        assert w.live_tasks("standup"), "still failing over: the 404 did not stop it"
        await w.tick(40)  # the failover completes: the task records again
        for _ in range(4):
            await w.run(key, step=5)
        assert not w.live_tasks("standup"), "the task back from failover was never stopped"
