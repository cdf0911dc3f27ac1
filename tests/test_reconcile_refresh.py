"""``recctl reconcile`` and ``recctl status --refresh`` look before they plan (issue 21).

With the service down (every notification lost) and a killed recorder, the log still says
"recording": planned from the log alone (``--offline``) the room is healthy and nothing is
done. Refreshed first, the provider's answer (404) stands beside the log's, and the plan is
made from both: wait out the failover window, then start a replacement. A dry run and
``status --refresh`` learn the same and write nothing."""

from __future__ import annotations

import io
import json
from pathlib import Path

from service.commands.reconcile import reconcile_command
from service.commands.status import status_command
from service.emulators.agora import FaultConfig
from tests.e2e_harness import World, world


async def killed_unseen(w: World) -> tuple[str, str]:
    """A recording room whose recorder is killed while no notification gets through."""
    w.emu.join("heal", 11)
    key = await w.declare("heal")
    await w.run(key, passes=4)
    (task,) = w.live_tasks("heal")
    w.emu.set_faults(FaultConfig(callback_drop_rate=1.0, side_effect_rate=0.0))
    w.emu.kill(task.sid, failover=False)
    await w.tick(1)
    assert not w.live_tasks("heal")
    return key, task.sid


async def plan_table(w: World, key: str, *, dry_run: bool, offline: bool) -> list[str]:
    out, err = io.StringIO(), io.StringIO()
    await reconcile_command(w.reconciler, key, dry_run, out, err, offline=offline)
    return out.getvalue().splitlines()


async def test_reconcile_refreshes_before_it_plans(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        key, sid = await killed_unseen(w)
        offline = await plan_table(w, key, dry_run=True, offline=True)
        assert offline[0].split() == ["ROOM", "DESIRED", "OBSERVED", "ACTION", "REASON"]
        assert "healthy" in offline[1], "the log alone says all is well"

        before = len(await w.store.read_log())
        queries = w.emu.stats.to_json()["requests"].get("query", 0)
        looked = await plan_table(w, key, dry_run=True, offline=False)
        assert looked[0].split() == ["ROOM", "DESIRED", "LOG", "PROVIDER", "OBSERVED", "ACTION",
                                     "REASON"]
        row = looked[1]
        assert f"{sid[:8]} recording" in row and "not found (404)" in row
        assert "query" in row and "failover" in row, "a 404 is waited out, not believed at once"
        assert len(await w.store.read_log()) == before, "a dry run writes nothing"
        asked = w.emu.stats.to_json()["requests"].get("query", 0) - queries
        assert asked == 1, "one read-only query for the one session the log believes alive"
        assert not w.emu.stats.to_json()["requests"].get("stop"), "nothing but reads"

        await plan_table(w, key, dry_run=False, offline=False)  # the 404 is logged now
        await w.tick(95)  # past the failover window
        await plan_table(w, key, dry_run=False, offline=False)
        live = w.live_tasks("heal")
        assert len(live) == 1 and live[0].sid != sid, "a replacement records"


async def test_status_refresh_shows_the_provider_beside_the_log(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        key, sid = await killed_unseen(w)
        before = len(await w.store.read_log())
        out = io.StringIO()
        assert await status_command(w.reconciler, key, False, out, refresh_first=True) == 0
        view = json.loads(out.getvalue())
        looked = {"sid": sid, "log": "recording", "provider": "not found (404)"}
        assert view["refreshed"] == [looked]
        recording = next(c for c in view["conditions"] if c["type"] == "Recording")
        assert recording["status"] == "Unknown", "made from the provider's answer"
        assert len(await w.store.read_log()) == before, "status writes nothing"
        plain = io.StringIO()
        assert await status_command(w.reconciler, key, False, plain) == 0
        assert "refreshed" not in json.loads(plain.getvalue())
