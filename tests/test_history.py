"""A long history changes what a pass reads, never what it decides.

A store with a few thousand events of realistic traffic (:mod:`tests.bench.traffic`): many
sessions per channel, most of them ended. A pass reads only its channel's live sessions and
its current segment's; its plan must be the one it would make reading every session the
channel ever had (as it did before ended sessions were filed apart).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from reconcilers.engine import Reconciler
from reconcilers.observed import observe
from reconcilers.plan import PlanConfig, plan
from reconcilers.projections import PROJECTIONS, closed_index
from service.store.sqlite import SqliteStore
from tests.bench.traffic import build_store, room_key

CHANNELS = 6


async def test_a_pass_plans_the_same_reading_only_live_sessions(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    build_store(path, CHANNELS, 4000, seed=3)
    store = await SqliteStore.open(path, PROJECTIONS)
    try:
        config = PlanConfig()
        reconciler = Reconciler(store, {}, lambda name: None, config)  # type: ignore[arg-type, return-value]
        now = datetime.now(UTC)
        ended_seen = ended_current = 0
        for i in range(CHANNELS):
            key, ckey = room_key(i), f"agora/ch-{i:05d}"
            live = await store.rows("sessions", room=ckey)
            ended = await store.rows("sessions", room=closed_index(ckey))
            assert all(r.data["state"] != "ended" for r in live)
            assert ended and all(r.data["state"] == "ended" for r in ended)
            ended_seen += len(ended)
            room = await store.get_row("rooms", key)
            assert room is not None
            sids = {s.get("sid") for s in room.data["segments"].values()}
            everything = [
                r.data
                for r in [*live, *ended]
                if r.data["state"] != "ended" or r.data["sid"] in sids
            ]
            state = await reconciler.state(key)
            now_ms = int(now.timestamp() * 1000)
            presence = await store.get_row("presence", ckey)
            desired, observed = observe(
                room.data, everything, presence.data if presence else None, config.uids
            )
            assert plan(state.desired, state.observed, now_ms, config) == plan(
                desired, observed, now_ms, config
            )
            assert state.observed.current == observed.current
            current = observed.session(observed.current.sid if observed.current else None)
            ended_current += current is not None and current.state == "ended"
        assert ended_seen > 5 * CHANNELS  # the history had many ended sessions to leave out
        assert ended_current  # and rooms whose current session had ended (read by key)
    finally:
        await store.close()
